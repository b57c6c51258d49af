"""Learning-rate policies: Caffe's SGDSolver::GetLearningRate, plus the paper's "plateau" policy.

Caffe's policies are pure functions of the 0-based iteration (multistep also keeps its position,
`current_step`, which the solverstate saves):

  fixed      base_lr
  step       base_lr * gamma ^ floor(iter / stepsize)
  exp        base_lr * gamma ^ iter
  inv        base_lr * (1 + gamma * iter) ^ (-power)
  multistep  base_lr * gamma ^ current_step, current_step advancing while iter >= stepvalue[current_step]
  poly       base_lr * (1 - iter / max_iter) ^ power
  sigmoid    base_lr / (1 + exp(-gamma * (iter - stepsize)))

"plateau" is this project's: the paper divided the rate by 10 whenever the validation accuracy
stopped improving, three times in all. After each test the solver reports the test output named
`plateau_metric`; when it has not improved by more than `plateau_threshold` for `plateau_patience`
consecutive tests, the rate is multiplied by `gamma`, at most `plateau_max_drops` times:
rate = base_lr * gamma ^ drops. A metric whose name contains "loss" improves by going down; any
other (accuracy) by going up. The drop count lives in SolverState.current_step, the best value and
the count of tests without improvement in plateau_best / plateau_bad_tests, so resuming continues
the schedule.
"""
import math

from ..errors import CaffeError

POLICIES = ("fixed", "step", "exp", "inv", "multistep", "poly", "sigmoid", "plateau")


class LrSchedule:
    """The rate at each iteration for one SolverParameter; holds the policy's state."""

    def __init__(self, param, source="<solver>"):
        self.param = param
        self.source = source
        self.policy = param.lr_policy
        self.current_step = 0          # multistep position, or plateau drops so far
        self.plateau_best = None
        self.plateau_bad_tests = 0
        self._check()

    def _check(self):
        p, where = self.param, self.source
        if not self.policy:
            raise CaffeError(f"{where}: lr_policy is not set; expected one of {', '.join(POLICIES)}")
        if self.policy not in POLICIES:
            raise CaffeError(f"{where}: unknown lr_policy '{self.policy}'; expected one of {', '.join(POLICIES)}")
        if self.policy == "step" and p.stepsize <= 0:
            raise CaffeError(f"{where}: lr_policy 'step' needs stepsize > 0")
        if self.policy == "poly" and p.max_iter <= 0:
            raise CaffeError(f"{where}: lr_policy 'poly' needs max_iter > 0")
        if self.policy == "multistep":
            values = list(p.stepvalue)
            if any(b <= a for a, b in zip(values, values[1:])):
                raise CaffeError(f"{where}: stepvalue must increase, got {values}")
        if self.policy == "plateau" and p.plateau_patience < 1:
            raise CaffeError(f"{where}: plateau_patience must be >= 1, got {p.plateau_patience}")
        if self.policy == "plateau" and self._defines_nets() and not (self._test_nets() and p.test_interval > 0):
            # Without a test pass the policy never hears of the metric: the rate would never drop.
            raise CaffeError(
                f"{where}: lr_policy 'plateau' lowers the rate when test output '{p.plateau_metric}' stops "
                f"improving, but this solver runs no test pass ({self._test_nets()} test net(s), test_interval "
                f"{p.test_interval}); give test_iter and test_interval > 0 (with net / net_param, or test_net), "
                "or choose another lr_policy (step, multistep, ...)")

    def _defines_nets(self):
        """Whether the parameter is a whole solver (it names its train net), not a bare schedule."""
        return any(self.param.HasField(f) for f in ("net", "net_param", "train_net", "train_net_param"))

    def _test_nets(self):
        """How many test nets the solver builds (Caffe's InitTestNets count)."""
        p = self.param
        specific = len(p.test_net) + len(p.test_net_param)
        generic = p.HasField("net") or p.HasField("net_param")
        return specific + (max(len(p.test_iter) - specific, 0) if generic else 0)

    def rate(self, it):
        """The learning rate at 0-based iteration `it` (advances multistep's position like Caffe)."""
        p = self.param
        base, gamma, power = p.base_lr, p.gamma, p.power
        policy = self.policy
        if policy == "fixed":
            return base
        if policy == "step":
            return base * gamma ** (it // p.stepsize)
        if policy == "exp":
            return base * gamma ** it
        if policy == "inv":
            return base * (1.0 + gamma * it) ** (-power)
        if policy == "multistep":
            while self.current_step < len(p.stepvalue) and it >= p.stepvalue[self.current_step]:
                self.current_step += 1
            return base * gamma ** self.current_step
        if policy == "poly":
            return base * (1.0 - it / p.max_iter) ** power
        if policy == "sigmoid":
            return base * (1.0 / (1.0 + math.exp(-gamma * (it - p.stepsize))))
        # plateau
        return base * gamma ** self.current_step

    # -- plateau -------------------------------------------------------------------------------

    @property
    def watches_tests(self):
        return self.policy == "plateau"

    def lower_is_better(self):
        return "loss" in self.param.plateau_metric.lower()

    def observe(self, value):
        """Tell the plateau policy the latest test value of plateau_metric; returns True when the
        rate was lowered."""
        if self.policy != "plateau":
            return False
        p = self.param
        if not math.isfinite(value):
            improved = False
        elif self.plateau_best is None:
            improved = True
        elif self.lower_is_better():
            improved = value < self.plateau_best - p.plateau_threshold
        else:
            improved = value > self.plateau_best + p.plateau_threshold
        if improved:
            self.plateau_best = value
            self.plateau_bad_tests = 0
            return False
        self.plateau_bad_tests += 1
        if self.plateau_bad_tests >= p.plateau_patience and self.current_step < p.plateau_max_drops:
            self.current_step += 1
            self.plateau_bad_tests = 0
            return True
        return False

    # -- solverstate ---------------------------------------------------------------------------

    def save(self, state):
        state.current_step = self.current_step
        if self.plateau_best is not None:
            state.plateau_best = self.plateau_best
        state.plateau_bad_tests = self.plateau_bad_tests

    def restore(self, state):
        self.current_step = state.current_step
        self.plateau_best = state.plateau_best if state.HasField("plateau_best") else None
        self.plateau_bad_tests = state.plateau_bad_tests
