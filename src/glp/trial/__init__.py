"""One trial: load the pre-trained model with the task's head → drop layers → fine-tune (or heal) → score.

- `glp.trial.types`: the request, data and result types (plain data, across processes);
- `glp.trial.hparams`: the fine-tuning hyper-parameters (run_glue's names), healing and precision;
- `glp.trial.scoring`: `TrialSpec` (what a run's trials are built from; ``TrialSpec.trial`` is the one constructor)
  and `Trial` (a resumable fine-tune of one candidate);
- `glp.trial.loop`: the training loop (length-grouped batches, AdamW, linear schedule, seeded RNG, NaN checks);
- `glp.trial.heal`: LoRA / full healing (PEFT); `glp.trial.distill`: the teacher and the distillation loss;
- `glp.trial.prefix`: unhealed candidates scored on shared hidden states (``--heal none``);
- `glp.trial.lmeval`: zero-shot scores through lm-evaluation-harness.
"""
