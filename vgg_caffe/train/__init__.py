"""Training: Caffe's solvers over a Net.

solver.py the loop (Solver.step / solve), nets.py the train and test nets, testing.py the test
pass, updates/ one update rule per solver type (SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam),
lr_policy.py the learning-rate policies, snapshot.py snapshots and resume, log.py Caffe's log
lines and their parser, parallel.py / collective.py / workers.py data parallelism.
"""
from .solver import Solver, TrainingDiverged  # noqa: F401
