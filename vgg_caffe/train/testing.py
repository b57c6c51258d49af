"""The test pass of a solver, as Caffe's Solver::TestAll / Solver::Test.

Every test_interval iterations each test net runs test_iter batches; each output element is
averaged over them and logged as "Test net output #k: NAME = V" (with "(* W = W*V loss)" for loss
outputs). In a parallel job the batches split over the workers (unevenly if need be) and the
means are weighted by the rows each worker covered. The "plateau" lr policy watches test net #0.
"""
from collections import OrderedDict

import torch

from ..errors import CaffeError
from .log import fmt

# Actions a signal (or anyone) can request; checked once per iteration and per test batch.
NONE, STOP, SNAPSHOT = 0, 1, 2


class SolverTesting:
    """Mixin of Solver: the test pass and the output lines shared with the train display."""

    def test_all(self):
        results = []
        for i in range(len(self.test_nets)):
            if self.requested_early_exit:
                break
            results.append(self.test(i))
        if self.schedule.watches_tests and results and results[0] is not None:
            self._plateau(results[0])
        return results

    def test(self, i):
        """Caffe's Solver::Test: mean of every output element over test_iter batches; returns
        {output name: mean} (the first element of each output)."""
        p, net = self.param, self.test_nets[i]
        self.log.info(f"Iteration {self.iter}, Testing net (#{i})")
        feed = self.test_feeds[i] if i < len(self.test_feeds) else None
        total, loss_total, names = None, None, None
        with torch.no_grad():
            for k in range(p.test_iter[i]):
                # In a parallel job requests wait for the next iteration, where all ranks agree.
                request = self.action() if self.world_size == 1 else NONE
                if request == SNAPSHOT:
                    self.snapshot()
                elif request == STOP:
                    self.requested_early_exit = True
                if self.requested_early_exit:
                    self.log.info("Test interrupted.")
                    return None
                window = self._window(k, self._global_batch(net), even=False)
                net.set_sample_window(window)
                net.iteration = k
                outputs = net(**self._inputs(net, feed, k, window))
                # Outputs are means over this process's rows; a test batch may split unevenly
                # (50 over 4 workers), so weigh them by the rows they cover before averaging.
                share = (window.stop - window.start) * self.world_size / window.total
                values = torch.cat([v.reshape(-1).float() for v in outputs.values()]) if outputs else torch.zeros(0)
                values = values * share if share != 1 else values
                names = [(n, v.numel()) for n, v in outputs.items()]
                total = values if total is None else total + values
                if p.test_compute_loss and net.loss_weights:
                    loss = net.loss.reshape(1).float() * share
                    loss_total = loss if loss_total is None else loss_total + loss
                net.blobs = {}
        if total is None:
            return {}
        packed = [total / p.test_iter[i]]
        if loss_total is not None:
            packed.append(loss_total / p.test_iter[i])
        self._average(packed)
        means = packed[0].tolist()
        if loss_total is not None:
            self.log.info(f"Test loss: {fmt(packed[1].item())}")
        result, k, pos = OrderedDict(), 0, 0
        for name, count in names:
            weight = net.loss_weights.get(name, 0.0)
            for j in range(count):
                v = means[pos]
                pos += 1
                extra = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self.log.info(f"    Test net output #{k}: {name} = {fmt(v)}{extra}")
                k += 1
                if j == 0:
                    result[name] = v
        return result

    def _plateau(self, result):
        metric = self.param.plateau_metric
        if metric not in result:
            raise CaffeError(f"{self.source}: lr_policy plateau watches test output '{metric}' "
                             f"(plateau_metric) but test net #0 outputs {', '.join(result) or 'nothing'}")
        before = self.schedule.current_step
        if self.schedule.observe(result[metric]):
            self.log.info(f"Plateau: test {metric} has not improved for {self.param.plateau_patience} test(s); "
                          f"lowering the learning rate to {fmt(self.schedule.rate(self.iter))} "
                          f"(drop {before + 1} of at most {self.param.plateau_max_drops})")

    def _log_outputs(self, kind, net, outputs, values):
        """'    Train net output #k: NAME = V (* W = W*V loss)', one line per output element."""
        k, pos = 0, 0
        for name, blob in outputs.items():
            weight = net.loss_weights.get(name, 0.0)
            for _ in range(blob.numel()):
                v = values[pos]
                pos += 1
                extra = f" (* {fmt(weight)} = {fmt(weight * v)} loss)" if weight else ""
                self.log.info(f"    {kind} net output #{k}: {name} = {fmt(v)}{extra}")
                k += 1
