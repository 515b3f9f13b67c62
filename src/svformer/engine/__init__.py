"""Training and evaluation: schedule, parameter groups, checkpoints, distributed helpers, the training
loop, multi-view evaluation, prediction and the CPU demo."""
