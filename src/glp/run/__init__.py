"""Where a run lives and how its trials run.

- `glp.run.rundir`: `RunDir`, the only code that knows the run directory's paths (plans, journal, cache, profile,
  report, evaluation files) and resolves "a run directory or a plan file";
- `glp.run.store`: the SQLite trial journal (a trial's key, the driver's lock, `journaled_runner`);
- `glp.run.executors`: where trials run: in process, one worker process per device slot, or Ray actors.
"""
