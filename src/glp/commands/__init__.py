"""The commands: ``glp prune`` (`glp.commands.prune`), ``evaluate``, ``export`` (with its model card,
`glp.commands.model_card`), ``profile``, ``report`` and ``drop``; each a function taking plain settings and returning
plain data, which the CLI (`glp.cli`) and the API (`glp.api`) call. The commands do not import each other (an
import-linter contract): what two of them share lives below them, in `glp.results`.
"""
