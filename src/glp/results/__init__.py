"""What the commands share about their artifacts: the evaluation's tables and reader (`glp.results.evaluation`), the
profile's tables, speed-ups and reader (`glp.results.profile`), an export's manifest (`glp.results.manifest`), and
choosing n by a target (`glp.results.targets`)."""
