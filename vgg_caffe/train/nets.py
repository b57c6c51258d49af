"""The nets of a solver, as Caffe's Solver::InitTrainNet / InitTestNets build them.

One train net from net / net_param / train_net / train_net_param (exactly one), and the test nets
from test_net_param, test_net and, for net / net_param, one instance per remaining test_iter, each
with its NetState: the phase, then net_param.state, then train_state / test_state[i]. Test nets
share the train net's blobs by layer name (Net::ShareTrainedLayersWith). In a parallel job every
batch must split over the workers, checked before any weights are read.
"""
import os

from ..errors import CaffeError
from ..net import Net
from ..proto import pb, read_net, upgrade_net
from ..rng import SampleWindow
from . import devices

def resolve_path(path, base_dir, what="file"):
    """Caffe resolves relative paths against the current directory; be lenient and also try the
    solver file's directory."""
    if not path or os.path.isabs(path) or os.path.exists(path) or not base_dir:
        return path
    candidate = os.path.join(base_dir, path)
    return candidate if os.path.exists(candidate) else path


class SolverNets:
    """Mixin of Solver: building its train and test nets and feeding them (uses self.param, self.source,
    self.base_dir, self.log, self.seed, self.rank, self.world_size)."""

    def _net_param(self, param_field, file_field, index=None):
        p = self.param
        if index is None:
            if p.HasField(param_field):
                return upgrade_net(getattr(p, param_field), self.source)
            path = resolve_path(getattr(p, file_field), self.base_dir)
        else:
            params = getattr(p, param_field)
            if index < len(params):
                return upgrade_net(params[index], self.source)
            path = resolve_path(getattr(p, file_field)[index - len(params)], self.base_dir)
        if not os.path.exists(path):
            raise CaffeError(f"{self.source}: net file '{path}' does not exist")
        return read_net(path)

    def _init_train_net(self, batch_scale):
        p, where = self.param, self.source
        given = [f for f in ("train_net_param", "train_net", "net_param", "net") if p.HasField(f)]
        if not given:
            raise CaffeError(f"{where}: one of net, net_param, train_net or train_net_param must be given")
        if len(given) > 1:
            raise CaffeError(f"{where}: give only one of net, net_param, train_net, train_net_param (found {', '.join(given)})")
        field = given[0]
        if field.endswith("_param"):
            model = net_param = upgrade_net(getattr(p, field), where)
            net_source = where          # the net is written inside the solver file
        else:
            model = net_source = self._existing(getattr(p, field))
            net_param = read_net(model)
        if batch_scale != 1:
            from .parallel import scale_batch_size
            model = net_param = scale_batch_size(net_param, batch_scale, pb.TRAIN)
        state = pb.NetState(phase=pb.TRAIN)
        state.MergeFrom(net_param.state)
        state.MergeFrom(p.train_state)
        self.log.info(f"Creating training net from {field}" + ("" if field.endswith("_param") else f" file {getattr(p, field)}"))
        # The net's errors name its file (the solver's, for a net_param written inside it).
        return Net(model, phase=state.phase, level=state.level, stages=list(state.stage), source=net_source,
                   seed=self.seed)

    def _check_batch_split(self):
        """In a parallel job, every batch must split over the workers: the train batch evenly (the
        averaged gradient is then the batch's), a test batch into non-empty shares. Checked once the
        nets are built, so a bad batch size fails before the first test pass or iteration."""
        if self.world_size == 1:
            return
        from .parallel import sample_slice
        for net, what, even in [(self.net, "train net", True)] + [(tn, f"test net #{i}", False)
                                                                 for i, tn in enumerate(self.test_nets)]:
            total = self._declared_batch(net)
            if total is None:
                continue
            try:
                sample_slice(total, self.rank, self.world_size, even=even)
            except CaffeError as e:
                raise CaffeError(f"{net.source}: {what}: {e}") from None

    @staticmethod
    def _declared_batch(net):
        """The global batch of `net` as its data layers (or inputs) declare it; None without any."""
        for layer in net.data_layers:
            if layer.top_shapes and layer.top_shapes[0]:
                return int(layer.top_shapes[0][0])
        for name in net.input_names:
            shape = net.blob_shapes.get(name)
            if shape:
                return int(shape[0])
        return None

    def _existing(self, path):
        resolved = resolve_path(path, self.base_dir)
        if not os.path.exists(resolved):
            raise CaffeError(f"{self.source}: net file '{path}' does not exist")
        return resolved

    def _init_test_nets(self):
        p, where = self.param, self.source
        generic = p.HasField("net") or p.HasField("net_param")
        specific = [("test_net_param", i) for i in range(len(p.test_net_param))] + \
                   [("test_net", i) for i in range(len(p.test_net))]
        if generic:
            if len(p.test_iter) < len(specific):
                raise CaffeError(f"{where}: test_iter must be specified for each test network "
                                 f"({len(specific)} test nets, {len(p.test_iter)} test_iter)")
        elif len(p.test_iter) != len(specific):
            raise CaffeError(f"{where}: test_iter must be specified for each test network "
                             f"({len(specific)} test nets, {len(p.test_iter)} test_iter)")
        count = len(specific) + (len(p.test_iter) - len(specific) if generic else 0)
        if len(p.test_state) and len(p.test_state) != count:
            raise CaffeError(f"{where}: test_state must be unspecified or given once per test net ({count})")
        if count and p.test_interval <= 0:
            raise CaffeError(f"{where}: there are {count} test net(s) but test_interval is {p.test_interval}; "
                             "set test_interval > 0")
        nets = []
        for i in range(count):
            if i < len(specific):
                kind, j = specific[i]
                if kind == "test_net_param":
                    model = net_param = upgrade_net(p.test_net_param[j], where)
                    net_source = where
                else:
                    model = net_source = self._existing(p.test_net[j])
                    net_param = read_net(model)
            elif p.HasField("net_param"):
                model = net_param = upgrade_net(p.net_param, where)
                net_source = where
            else:
                model = net_source = self._existing(p.net)
                net_param = read_net(model)
            state = pb.NetState(phase=pb.TEST)
            state.MergeFrom(net_param.state)
            if len(p.test_state):
                state.MergeFrom(p.test_state[i])
            self.log.info(f"Creating test net (#{i})")
            net = Net(model, phase=state.phase, level=state.level, stages=list(state.stage), source=net_source,
                      seed=self.seed + 1 + i)
            self._share_trained_layers(net)
            nets.append(net)
        return nets

    def _share_trained_layers(self, test_net):
        """Caffe's ShareTrainedLayersWith: a test layer with the name of a train layer uses its blobs."""
        test_net.share_trained_layers(self.net, where=self.source)

    # -- the inputs of a pass -----------------------------------------------------------------

    def _window(self, index, total, even=True):
        from .parallel import sample_slice
        start, stop = sample_slice(total, self.rank, self.world_size, even=even)
        return SampleWindow(self.seed, index, start, stop, total)

    def _global_batch(self, net):
        # The data layers' declared batch is the global batch; net.blob_shapes follows the last
        # forward pass, which in a parallel job holds only this process's slice.
        total = self._declared_batch(net)
        if total is not None:
            return total
        raise CaffeError(f"{net.source}: the net has no data layer or input to train on")

    def _inputs(self, net, feed, index, window):
        """The inputs of forward pass `index` for this process's slice: from `feed`, else from the
        net's data layers (layer.batch(index, start, stop))."""
        if feed is not None:
            inputs = dict(feed(index, window.start, window.stop))
        else:
            inputs = {}
            for layer in net.data_layers:
                tops = list(layer.param.top)
                if not hasattr(layer, "batch"):
                    raise CaffeError(f"{net.source}: layer '{layer.name}' ({layer.type}) has no data source; the "
                                     f"solver cannot train a net whose input '{tops[0]}' is fed by hand (use a data layer)")
                for t, v in zip(tops, layer.batch(index, window.start, window.stop)):
                    inputs[t] = v
        if self.device.type != "cpu":   # check labels on the host tensors, then copy without waiting
            devices.check_labels(net, inputs)
            inputs = {t: devices.to_device(v, self.device) for t, v in inputs.items()}
        return inputs
