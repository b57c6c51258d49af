"""Predicted data-parallel scaling of VGG training on 4 and 8 GPUs, from one GPU's measurements.

PREDICTED, NOT MEASURED: the machine this project has holds one GPU. What goes in:
- measured (on the one GPU, by bench/gpu_scaling.py, or given by hand): the step time at the
  global batch B (256), the step time at the per-GPU batch B/W each of W GPUs would run (the
  paper splits the batch; without it, B/W is assumed to take 1/W of the time), and when each
  gradient bucket of vgg_caffe.train.overlap became ready during backward (without it: gradients
  are assumed ready in reverse layer order, each layer's backward taking time in proportion to its
  multiply-adds, backward being 2/3 of the step);
- the gradient volume: the buckets' bytes (VGG-16: 138,357,544 float32 = 553 MB);
- link figures, not measured here: NVLink 4 on H200 ~450 GB/s per direction, PCIe Gen5 x16 ~64 GB/s
  per direction, of which a ring all-reduce achieves `efficiency` (0.8) as bus bandwidth, plus a
  per-step latency; and `contention`, the fraction of overlapped communication time that slows
  the backward it overlaps (NCCL's kernels share the SMs and memory bandwidth).
The model: a ring all-reduce of n bytes over W GPUs takes 2(W-1)/W * n / busbw + 2(W-1) * latency;
buckets go one after another on the wire, each starting when it is ready and the previous one is
done; what is left after backward ends is exposed. Step(W) = compute(B/W) + exposed +
contention * overlapped; scaling efficiency = step(1 GPU, batch B) / (W * step(W)), i.e.
images/s(W) / (W * images/s(1)) at the same global batch.

    python -m bench.scaling_model --step-s 0.25 [--profile bench/results/gpu_profile.json] \
        [--out bench/results/gpu_scaling_model.json]
"""
import argparse
import json
import sys

LINKS = {  # per-direction bandwidth (bytes/s) and per-ring-step latency (s): leads, not readings
    "nvlink4": {"bandwidth": 450e9, "latency": 6e-6,
                "note": "H200 NVLink 4: 18 links x 25 GB/s per direction = 450 GB/s"},
    "pcie5": {"bandwidth": 64e9, "latency": 12e-6, "note": "PCIe Gen5 x16: ~64 GB/s per direction"},
}
VGG16_BYTES = 138_357_544 * 4


def vgg_layers(config="D", crop=224):
    """[(name, gradient bytes, forward multiply-adds per image)] of a VGG config's learnable
    layers in net order (vgg_caffe.info on the deploy net, built on the meta device)."""
    from vgg_caffe.info import summarize
    from vgg_caffe.vgg import netgen

    opts = netgen.Options(crop=crop)
    rows, _ = summarize(netgen.deploy_net(config, opts))
    batch = rows[0].tops[0][1][0]
    return [(r.name, 4 * r.params, r.macs / batch) for r in rows if r.params]


def buckets_from_layers(layers, bucket_bytes=25 << 20, first_bytes=1 << 20):
    """The reducer's buckets (vgg_caffe.train.overlap's rule, whole layers here) in launch order:
    [(bytes, fraction of backward done when it is ready)]."""
    total_macs = sum(m for _, _, m in layers) or 1.0
    out, size, limit, done = [], 0, first_bytes, 0.0
    for _, nbytes, macs in reversed(layers):
        if size and size + nbytes > limit:
            out.append((size, done / total_macs))
            size, limit = 0, bucket_bytes
        size += nbytes
        done += macs
    if size:
        out.append((size, done / total_macs))
    return out


def ring_allreduce_s(nbytes, world, bandwidth, latency, efficiency):
    if world == 1:
        return 0.0
    return 2 * (world - 1) / world * nbytes / (bandwidth * efficiency) + 2 * (world - 1) * latency


def simulate(compute_s, backward_start_s, backward_end_s, buckets, world, link, efficiency, contention):
    """Step time of one of `world` GPUs. buckets: [(bytes, ready time in s from the step's start)]."""
    wire_free, overlapped, exposed_end = 0.0, 0.0, backward_end_s
    for nbytes, ready in buckets:
        start = max(ready, wire_free)
        cost = ring_allreduce_s(nbytes, world, link["bandwidth"], link["latency"], efficiency)
        wire_free = start + cost
        overlapped += max(0.0, min(wire_free, backward_end_s) - start)
    exposed = max(0.0, wire_free - exposed_end)
    return {"step_s": compute_s + exposed + contention * overlapped, "exposed_comm_s": exposed,
            "overlapped_comm_s": overlapped, "comm_total_s": sum(
                ring_allreduce_s(b, world, link["bandwidth"], link["latency"], efficiency) for b, _ in buckets)}


def predict(step_s, worlds=(4, 8), profile=None, layers=None, efficiency=0.8, contention=0.05,
            backward_share=2 / 3, batch=256):
    """{link: {W: prediction}} plus the inputs used. profile (from bench/gpu_scaling.py):
    {"per_gpu": {str(b): {"step_s", "backward_start_s", "backward_end_s",
    "buckets": [[bytes, ready_s], ...]}}} measured at per-GPU batches b."""
    per_gpu = (profile or {}).get("per_gpu", {})
    inputs = {"step_1gpu_s": step_s, "global_batch": batch, "efficiency": efficiency, "contention": contention,
              "measured_per_gpu_batches": sorted(int(b) for b in per_gpu)}
    default_buckets = None
    out = {"inputs": inputs, "links": {}}
    for name, link in LINKS.items():
        rows = {}
        for w in worlds:
            b = batch // w
            m = per_gpu.get(str(b))
            if m is not None:
                compute, start, end = m["step_s"], m["backward_start_s"], m["backward_end_s"]
                buckets = [(nbytes, ready) for nbytes, ready in m["buckets"]]
                source = "measured"
            else:
                if default_buckets is None:
                    default_buckets = buckets_from_layers(layers if layers is not None else vgg_layers())
                compute = step_s / w
                start = compute * (1 - backward_share)
                end = compute
                buckets = [(nbytes, start + frac * (end - start)) for nbytes, frac in default_buckets]
                source = "assumed: compute scales as 1/W, readiness by multiply-adds"
            sim = simulate(compute, start, end, buckets, w, link, efficiency, contention)
            rows[w] = {**sim, "per_gpu_batch": b, "compute_s": compute, "gradient_bytes": sum(n for n, _ in buckets),
                       "images_per_s": batch / sim["step_s"], "scaling_efficiency": step_s / (w * sim["step_s"]),
                       "inputs": source}
        out["links"][name] = {"link": link, "predicted": rows}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step-s", type=float, required=True, help="measured 1-GPU step time at the global batch")
    p.add_argument("--profile", help="JSON of per-GPU-batch measurements written by bench/gpu_scaling.py")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--efficiency", type=float, default=0.8, help="bus bandwidth achieved / link bandwidth")
    p.add_argument("--contention", type=float, default=0.05)
    p.add_argument("--out")
    args = p.parse_args(argv)
    profile = None
    if args.profile:
        with open(args.profile) as f:
            profile = json.load(f)
    result = {"benchmark": "gpu_scaling_model", "kind": "PREDICTED (a model fed by one GPU's measurements)",
              **predict(args.step_s, profile=profile, efficiency=args.efficiency, contention=args.contention,
                        batch=args.batch)}
    for name, link in result["links"].items():
        for w, r in link["predicted"].items():
            print(f"predicted {name} {w} GPUs: efficiency {r['scaling_efficiency']:.3f}, "
                  f"exposed all-reduce {r['exposed_comm_s'] * 1e3:.1f} ms ({r['inputs']})")
    if args.out:
        from bench._report import write
        write(args.out, result)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
