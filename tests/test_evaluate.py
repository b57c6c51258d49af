"""The paper's test protocols (vgg_caffe.evaluate) on a small VGG-shaped net with a 32x32 crop,
checked against hand computations, a torch twin and OpenCV's Caffe importer."""
import json
import os

import cv2
import lmdb
import numpy as np
import pytest
import skimage.data
import torch

from test_dense import randomise, small_vgg, twin_scores, write_caffemodel
from vgg_caffe import eval as ev
from vgg_caffe import evaluate as evaluate_cli
from vgg_caffe.errors import CaffeError
from vgg_caffe.proto import pb

MEAN = np.array([103.939, 116.779, 123.68], np.float32)


def photo(name="astronaut", h=48, w=64):
    img = getattr(skimage.data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return np.ascontiguousarray(cv2.resize(img[:, :, 2::-1], (w, h), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def model():
    m = ev.Model(small_vgg(), None, batch_size=16)
    randomise(m.net, seed=11)
    return m


def softmax(s):
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def fc_posterior(model, crop_hwc):
    """The FC net on hand-made crops (BGR minus mean pixel), soft-maxed in numpy: one crop (H, W, 3)
    or a list of them."""
    many = isinstance(crop_hwc, list)
    crops = np.stack(crop_hwc if many else [crop_hwc]).astype(np.float32) - MEAN
    model.net(data=torch.from_numpy(crops.transpose(0, 3, 1, 2).copy()))
    p = softmax(model.net.blobs["fc8"].detach().double().numpy())
    return p if many else p[0]


def test_topk_error_against_a_hand_count():
    p = np.array([
        [0.10, 0.50, 0.20, 0.05, 0.05, 0.04, 0.03, 0.03],   # label 1: top-1 right
        [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.03, 0.02],   # label 4: 4 rivals above -> top-5 right, top-1 wrong
        [0.30, 0.20, 0.15, 0.12, 0.10, 0.08, 0.03, 0.02],   # label 5: 5 rivals above -> both wrong
        [0.25, 0.25, 0.20, 0.10, 0.10, 0.05, 0.03, 0.02],   # label 1 tied with class 0: tie counts against (top-1 wrong)
        [0.20, 0.20, 0.20, 0.20, 0.20, 0.00, 0.00, 0.00],   # label 4, four ties: top-5 right (4 rivals)
    ])
    labels = [1, 4, 5, 1, 4]
    # Hand count: top-1 correct only for image 0 -> 4 wrong of 5; top-5 wrong only for image 2.
    top1, top5 = ev.error_rates(p, labels)
    assert top1 == pytest.approx(80.0) and top5 == pytest.approx(20.0)
    assert list(ev.topk_correct(p, labels, 1)) == [True, False, False, False, False]
    assert list(ev.topk_correct(p, labels, 5)) == [True, True, False, True, True]


def test_dense_at_crop_scale_equals_the_single_centre_crop(model):
    img = photo(h=64, w=64)   # square: rescaled to Q = 32 it is exactly one crop
    single = model.posteriors([img], ["single"], [32])["single"]
    dense = model.posteriors([img], ["dense"], [32], flip=False)["dense"]
    np.testing.assert_allclose(dense, single, atol=1e-6)
    small = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(single[0], fc_posterior(model, small), atol=1e-6)
    # With flips: the average of the crop's and its mirror's posteriors.
    dense_flip = model.posteriors([img], ["dense"], [32])["dense"][0]
    want = (fc_posterior(model, small) + fc_posterior(model, small[:, ::-1])) / 2
    np.testing.assert_allclose(dense_flip, want, atol=1e-6)


def test_dense_averages_the_score_map_then_softmaxes_then_averages_flips(model):
    img = photo("chelsea", 50, 70)
    q = 44
    got = model.posteriors([img], ["dense"], [q])["dense"][0]
    h, w = img.shape[:2]
    r = cv2.resize(img, (round(w * q / h), q), interpolation=cv2.INTER_LINEAR)
    x = torch.from_numpy((r.astype(np.float32) - MEAN).transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        maps = [twin_scores(model.net, x), twin_scores(model.net, x.flip(3))]
    assert maps[0].shape[2:] == (3, 5)
    want = np.mean([softmax(m.double().mean((2, 3)).numpy()[0]) for m in maps], 0)
    np.testing.assert_allclose(got, want, atol=1e-6)
    # The other order (soft-max per position, then average) gives different numbers here.
    other = np.mean([torch.softmax(m.double(), 1).mean((2, 3)).numpy()[0] for m in maps], 0)
    assert np.abs(other - want).max() > 1e-4


def test_multi_crop_uses_a_5x5_grid_and_flips(model):
    img = photo("coffee", 40, 60)
    q = 40
    got = model.posteriors([img], ["multi-crop"], [q])["multi-crop"][0]
    r = cv2.resize(img, (60, 40), interpolation=cv2.INTER_LINEAR)
    ys = [round(i * (40 - 32) / 4) for i in range(5)]
    xs = [round(i * (60 - 32) / 4) for i in range(5)]
    crops = []
    for y in ys:
        for x in xs:
            c = r[y:y + 32, x:x + 32]
            crops += [c, c[:, ::-1]]
    posts = fc_posterior(model, crops)
    assert len(posts) == 50
    np.testing.assert_allclose(got, np.mean(posts, 0), atol=1e-6)


def test_multi_crop_on_a_grid_of_one_is_the_centre_crop(model):
    imgs = [photo("astronaut", 48, 64), photo("rocket", 60, 40)]
    for q in (32, 37):
        one = model.posteriors(imgs, ["multi-crop"], [q], grid=1, flip=False)["multi-crop"]
        single = model.posteriors(imgs, ["single"], [q])["single"]
        np.testing.assert_allclose(one, single, atol=1e-7)
    r = cv2.resize(imgs[1], (37, round(60 * 37 / 40)), interpolation=cv2.INTER_LINEAR)  # 37 x 56
    top = (r.shape[0] - 32) // 2
    np.testing.assert_allclose(single[1], fc_posterior(model, r[top:top + 32, 2:34]), atol=1e-6)


def test_multi_scale_averages_posteriors_and_multi_crop_dense_averages_both(model):
    img = photo("astronaut", 48, 64)
    both = model.posteriors([img], ["dense", "multi-crop", "multi-crop+dense"], [32, 40], grid=3)
    for p in ("dense", "multi-crop"):
        per = [model.posteriors([img], [p], [q], grid=3)[p] for q in (32, 40)]
        np.testing.assert_allclose(both[p], np.mean(per, 0), atol=1e-7)
    np.testing.assert_allclose(both["multi-crop+dense"], (both["dense"] + both["multi-crop"]) / 2, atol=1e-12)


def test_fusion_of_a_model_with_itself_is_the_model(model):
    imgs = [(f"k{i}", photo(n, 40, 52), i % 5) for i, n in enumerate(["astronaut", "coffee", "chelsea", "rocket"])]
    rows, labels, posts = ev.evaluate([(model, 256), (model, 256)], iter(imgs), 4, ["dense", "single"],
                                      [[32, 36], [32, 36]], progress=False)
    for p in ("dense", "single"):
        np.testing.assert_allclose(posts[("fusion", p)], posts[(0, p)], atol=1e-12)
    assert len(rows) == 6 and rows[2]["config"].startswith("fusion(")
    for a, b in ((rows[0], rows[2]), (rows[3], rows[5])):
        assert (a["top1_error"], a["top5_error"]) == (b["top1_error"], b["top5_error"])
    top1, top5 = ev.error_rates(posts[(0, "dense")], labels)
    assert rows[0]["top1_error"] == pytest.approx(top1, abs=1e-4)


def test_single_crop_pipeline_matches_opencv_caffe_importer(model, tmp_path):
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(small_vgg(v1=True))
    weights = write_caffemodel(str(tmp_path / "w.caffemodel"), model.net, v1=True)
    ref = cv2.dnn.readNetFromCaffe(str(proto), weights)
    img = photo("chelsea", 45, 60)
    got = model.posteriors([img], ["single"], [36])["single"][0]
    r = cv2.resize(img, (48, 36), interpolation=cv2.INTER_LINEAR)
    crop = r[2:34, 8:40].astype(np.float32) - MEAN
    ref.setInput(crop.transpose(2, 0, 1)[None].copy())
    np.testing.assert_allclose(got, ref.forward().ravel(), atol=1e-5)


def test_scales_follow_the_paper():
    assert ev.test_scales(256, False) == [256] and ev.test_scales(256, True) == [224, 256, 288]
    assert ev.test_scales((256, 512), False) == [384] and ev.test_scales((256, 512), True) == [256, 384, 512]
    assert ev.parse_scale("256,512") == (256, 512) and ev.parse_scale("384") == 384
    assert ev.grid_offsets(256, 224, 5) == [0, 8, 16, 24, 32] and ev.grid_offsets(257, 224, 1) == [16]
    with pytest.raises(CaffeError):
        ev.parse_scale("512,256")


def test_a_scale_below_the_crop_is_an_error(model):
    with pytest.raises(CaffeError, match="Q=30 is smaller than the model's input 32x32"):
        model.posteriors([photo()], ["dense"], [30])


def write_lmdb(path, records):
    env = lmdb.open(str(path), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i, (img, label, encoded) in enumerate(records):
            if encoded:
                d = pb.Datum(data=cv2.imencode(".png", img)[1].tobytes(), label=label, encoded=True)
            else:
                d = pb.Datum(channels=3, height=img.shape[0], width=img.shape[1],
                             data=img.transpose(2, 0, 1).tobytes(), label=label)
            txn.put(f"{i:08d}_img{i}.png".encode(), d.SerializeToString())
    env.close()


def test_command_line_on_lmdb_and_image_list_with_a_v1_deploy(model, tmp_path, capsys):
    pytest.importorskip("vgg_caffe.io.caffemodel")  # the weights helper's loader reads --weights
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(small_vgg(v1=True))
    weights = write_caffemodel(str(tmp_path / "w.caffemodel"), model.net, v1=True)
    names = ["astronaut", "coffee", "chelsea", "rocket", "camera"]
    imgs = [photo(n, 40 + 4 * i, 56) for i, n in enumerate(names)]
    write_lmdb(tmp_path / "val_lmdb", [(img, i % 5, i % 2 == 0) for i, img in enumerate(imgs)])
    (tmp_path / "imgs").mkdir()
    lines = []
    for i, img in enumerate(imgs):
        cv2.imwrite(str(tmp_path / "imgs" / f"im {i}.png"), img)  # a space in the name: split at the last
        lines.append(f"im {i}.png {i % 5}")
    (tmp_path / "val.txt").write_text("\n".join(lines) + "\n")
    common = ["--model", str(proto), "--weights", weights, "--protocol", "dense,multi-crop",
              "--train-scale", "32,48", "--multi-scale", "--grid", "2", "--quiet"]
    rows = evaluate_cli.main(common + ["--data", str(tmp_path / "val_lmdb"), "--out", str(tmp_path / "res.json")])
    out = capsys.readouterr().out
    assert "top-5 val. error (%)" in out and "dense" in out and "32,40,48" in out
    saved = json.loads((tmp_path / "res.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(rows))
    csv_lines = (tmp_path / "res.csv").read_text().splitlines()
    assert csv_lines[0].startswith("config,method,train_scale,test_scale,top1_error,top5_error")
    assert len(csv_lines) == 3
    # The same photos through the image-list path give the same numbers, and match the library.
    rows2 = evaluate_cli.main(common + ["--data", str(tmp_path / "imgs"), str(tmp_path / "val.txt")])
    assert [(r["top1_error"], r["top5_error"]) for r in rows] == [(r["top1_error"], r["top5_error"]) for r in rows2]
    posts = model.posteriors(imgs, ["dense"], [32, 40, 48])["dense"]
    assert rows[1]["method"] == "multi-crop"
    top1, top5 = ev.error_rates(posts, [i % 5 for i in range(5)])
    assert rows[0]["top1_error"] == pytest.approx(top1, abs=1e-3)
    assert rows[0]["train_scale"] == "[32;48]" and rows[0]["images"] == 5


def test_bad_inputs_are_caffe_errors(tmp_path):
    (tmp_path / "val.txt").write_text("nolabel\n")
    with pytest.raises(CaffeError, match="val.txt:1: expected 'path label'"):
        ev.open_data([str(tmp_path), str(tmp_path / "val.txt")])
    (tmp_path / "val.txt").write_text("missing.png 3\n")
    _, it = ev.open_data([str(tmp_path), str(tmp_path / "val.txt")])
    with pytest.raises(CaffeError, match="val.txt:1"):
        next(it)
    with pytest.raises(CaffeError, match="does not exist"):
        ev.open_data([str(tmp_path / "nope")])
    with pytest.raises(CaffeError, match="unknown protocol"):
        ev.evaluate([], iter([]), 0, ["dence"], [])
    env = lmdb.open(str(tmp_path / "bad_lmdb"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"00000000_x.png", pb.Datum(channels=3, height=4, width=4, data=b"\0" * 10).SerializeToString())
    env.close()
    _, it = ev.open_data([str(tmp_path / "bad_lmdb")])
    with pytest.raises(CaffeError, match="record '00000000_x.png'"):
        next(it)


def test_weights_missing_a_layer_name_the_cli_flag_that_allows_it(model, tmp_path, capsys):
    pytest.importorskip("vgg_caffe.io.caffemodel")
    proto = tmp_path / "deploy.prototxt"
    proto.write_text(small_vgg())
    full = write_caffemodel(str(tmp_path / "full.caffemodel"), model.net)
    partial = pb.NetParameter()
    with open(full, "rb") as f:
        partial.ParseFromString(f.read())
    kept = [lp for lp in partial.layer if lp.name != "fc8"]
    del partial.layer[:]
    partial.layer.extend(kept)
    (tmp_path / "no_fc8.caffemodel").write_bytes(partial.SerializeToString())
    write_lmdb(tmp_path / "val_lmdb", [(photo("astronaut", 40, 56), 1, False), (photo("coffee", 44, 56), 3, False)])
    common = ["--model", str(proto), "--data", str(tmp_path / "val_lmdb"), "--protocol", "single",
              "--scales", "32", "--quiet"]
    with pytest.raises(CaffeError, match=r"no_fc8.caffemodel: the net's layer\(s\) fc8 .*--no-strict on the command line"):
        evaluate_cli.main(common + ["--weights", str(tmp_path / "no_fc8.caffemodel")])
    rows = evaluate_cli.main(common + ["--weights", str(tmp_path / "no_fc8.caffemodel"), "--no-strict"])
    assert len(rows) == 1 and rows[0]["images"] == 2
    # The layers the file has were loaded: fc7 of the evaluated net is the model's.
    loaded = ev.Model(str(proto), str(tmp_path / "no_fc8.caffemodel"), strict=False)
    torch.testing.assert_close(loaded.net.params["fc7"][0], model.net.params["fc7"][0])
    capsys.readouterr()


def test_table_rules_line_up_with_the_column_separators():
    rows = [dict(config="D", method="dense", train_scale="[256;512]", test_scale="256,384,512",
                 top1_error=24.8, top5_error=7.5),
            dict(config="a long model name", method="multi-crop+dense", train_scale="384", test_scale="352,384,416",
                 top1_error=100.0, top5_error=0.0)]
    lines = ev.format_table(rows).splitlines()
    assert len(lines) == 4 and lines[1].strip("-+") == ""
    bars = [[i for i, c in enumerate(l) if c == "|"] for l in (lines[0], lines[2], lines[3])]
    pluses = [i for i, c in enumerate(lines[1]) if c == "+"]
    assert len(pluses) == len(ev.COLUMNS) - 1 and all(b == pluses for b in bars)
    assert len({len(l) for l in lines}) == 1                    # the rule is as wide as the rows
    assert lines[3].split(" | ")[0].rstrip() == "a long model name"
