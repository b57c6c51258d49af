"""convert_imageset: Caffe's LMDB layout read back with the plain lmdb package and a Datum schema
built here from Caffe's field numbers (not our caffe.proto), against cv2.imread of the same files."""
import os
import signal
import subprocess
import time

import cv2
import lmdb
import numpy as np
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from datatest_util import PY, ROOT, call_tool, photo, read_lmdb, write_photos
from vgg_caffe.data.convert import Options, convert_imageset
from vgg_caffe.errors import CaffeError


def _independent_datum_class():
    """Datum as upstream caffe.proto declares it: channels=1 height=2 width=3 data=4 label=5
    float_data=6 encoded=7."""
    f = descriptor_pb2.FileDescriptorProto(name="independent_datum.proto", package="indep", syntax="proto2")
    m = f.message_type.add(name="Datum")
    T = descriptor_pb2.FieldDescriptorProto
    for name, num, typ, label in [("channels", 1, T.TYPE_INT32, T.LABEL_OPTIONAL),
                                  ("height", 2, T.TYPE_INT32, T.LABEL_OPTIONAL),
                                  ("width", 3, T.TYPE_INT32, T.LABEL_OPTIONAL),
                                  ("data", 4, T.TYPE_BYTES, T.LABEL_OPTIONAL),
                                  ("label", 5, T.TYPE_INT32, T.LABEL_OPTIONAL),
                                  ("float_data", 6, T.TYPE_FLOAT, T.LABEL_REPEATED),
                                  ("encoded", 7, T.TYPE_BOOL, T.LABEL_OPTIONAL)]:
        m.field.add(name=name, number=num, type=typ, label=label)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("indep.Datum"))


Datum = _independent_datum_class()


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "imgs"
    write_photos(root / "cls a")  # a space in the folder name: lines split at the LAST space
    cv2.imwrite(str(root / "gray.png"), photo("camera", (64, 48)))
    names = ["cls a/astronaut.jpg", "cls a/chelsea.jpg", "cls a/coffee.jpg", "cls a/rocket.jpg", "gray.png"]
    listfile = tmp_path / "list.txt"
    listfile.write_text("".join(f"{n} {i}\n" for i, n in enumerate(names)))
    return root, listfile, names


def test_raw_lmdb_matches_cv2_imread(photos, tmp_path):
    root, listfile, names = photos
    db = tmp_path / "raw_lmdb"
    call_tool("convert_imageset", f"{root}/", listfile, db, "--quiet")
    records = read_lmdb(db)
    assert sorted(records) == [f"{i:08d}_{n}".encode() for i, n in enumerate(names)]
    for i, n in enumerate(names):
        d = Datum.FromString(records[f"{i:08d}_{n}".encode()])
        ref = cv2.imread(str(root / n), cv2.IMREAD_COLOR)  # BGR, grey expanded to 3 channels
        assert (d.channels, d.height, d.width) == (3,) + ref.shape[:2]
        assert not d.encoded and d.label == i
        chw = np.frombuffer(d.data, np.uint8).reshape(3, d.height, d.width)
        np.testing.assert_array_equal(chw, ref.transpose(2, 0, 1))


def test_encoded_keeps_file_bytes_and_gray_resize(photos, tmp_path):
    root, listfile, names = photos
    db = tmp_path / "enc"
    convert_imageset(str(root), str(listfile), str(db), Options(encoded=True), progress=False, log=lambda *a: None)
    records = read_lmdb(db)
    d = Datum.FromString(records[b"00000001_cls a/chelsea.jpg"])
    assert d.encoded and d.data == (root / "cls a/chelsea.jpg").read_bytes()
    # The grey PNG must come back as 3 channels from a colour DB: it is re-encoded, not kept.
    g = Datum.FromString(records[b"00000004_gray.png"])
    dec = cv2.imdecode(np.frombuffer(g.data, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(dec, cv2.imread(str(root / "gray.png"), cv2.IMREAD_COLOR))

    db2 = tmp_path / "gray_resized"
    convert_imageset(str(root), str(listfile), str(db2), Options(gray=True, resize_height=20, resize_width=30),
                     progress=False, log=lambda *a: None)
    d = Datum.FromString(read_lmdb(db2)[b"00000002_cls a/coffee.jpg"])
    assert (d.channels, d.height, d.width) == (1, 20, 30)
    ref = cv2.resize(cv2.imread(str(root / "cls a/coffee.jpg"), cv2.IMREAD_GRAYSCALE), (30, 20))
    np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(20, 30), ref)


def test_min_side_isotropic(photos, tmp_path):
    root, listfile, names = photos
    db = tmp_path / "ms"
    convert_imageset(str(root), str(listfile), str(db), Options(min_side=40), progress=False, log=lambda *a: None)
    d = Datum.FromString(read_lmdb(db)[b"00000000_cls a/astronaut.jpg"])
    # 72x56 (w x h): the smaller side (56) becomes 40, the other round(72 * 40 / 56) = 51.
    assert (d.height, d.width) == (40, 51)
    ref = cv2.resize(cv2.imread(str(root / "cls a/astronaut.jpg")), (51, 40), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(3, 40, 51), ref.transpose(2, 0, 1))


def test_shuffle_seeded_and_workers_identical(photos, tmp_path):
    root, listfile, names = photos
    listfile.write_text("".join(f"{names[i % 5]} {i}\n" for i in range(30)))
    quiet = dict(progress=False, log=lambda *a: None)
    convert_imageset(str(root), str(listfile), str(tmp_path / "a"), Options(shuffle=True, seed=3), **quiet)
    convert_imageset(str(root), str(listfile), str(tmp_path / "b"), Options(shuffle=True, seed=3), workers=2, **quiet)
    convert_imageset(str(root), str(listfile), str(tmp_path / "c"), Options(shuffle=True, seed=4), **quiet)
    a, b, c = (read_lmdb(tmp_path / x) for x in "abc")
    assert a == b
    assert a != c
    labels = sorted(Datum.FromString(v).label for v in a.values())
    assert labels == list(range(30))  # a permutation of the list
    order = [Datum.FromString(a[k]).label for k in sorted(a)]
    assert order != list(range(30))
    # The key's number is the position after shuffling, the path is the list's path.
    for k, v in a.items():
        assert k.decode().split("_", 1)[1] == names[Datum.FromString(v).label % 5]


def test_damaged_inputs(tmp_path):
    from PIL import Image
    root = tmp_path / "bad"
    write_photos(root, names=("astronaut", "chelsea"))
    good = (root / "astronaut.jpg").read_bytes()
    (root / "truncated.JPEG").write_bytes(good[: len(good) // 2])
    flipped = bytearray(good)
    flipped[2:40] = bytes(255 - x for x in flipped[2:40])  # header destroyed
    (root / "flipped.JPEG").write_bytes(bytes(flipped))
    ok, png = cv2.imencode(".png", photo("coffee", (40, 30)))
    (root / "png_named.JPEG").write_bytes(png.tobytes())
    Image.fromarray(photo("chelsea", (40, 30))[:, :, ::-1]).convert("CMYK").save(root / "cmyk.JPEG", quality=95)
    cv2.imwrite(str(root / "gray.JPEG"), photo("camera", (40, 30)))
    (root / "empty.JPEG").write_bytes(b"")
    listfile = tmp_path / "list.txt"
    listfile.write_text("astronaut.jpg 0\ntruncated.JPEG 1\nflipped.JPEG 2\npng_named.JPEG 3\n"
                        "cmyk.JPEG 4\ngray.JPEG 5\nmissing.JPEG 6\nno_label_line\nempty.JPEG 7\nchelsea.jpg x\n")
    db = tmp_path / "db"
    r = call_tool("convert_imageset", f"{root}/", listfile, db, "--encoded", "--quiet")
    assert "Skipped 6 lines" in r.stdout
    records = read_lmdb(db)
    assert sorted(k.decode() for k in records) == [
        "00000000_astronaut.jpg", "00000003_png_named.JPEG", "00000004_cmyk.JPEG", "00000005_gray.JPEG"]
    report = (tmp_path / "db.skipped.txt").read_text()
    for what in ("truncated.JPEG\ttruncated", "flipped.JPEG\tcannot decode", "missing.JPEG\tmissing file",
                 "no_label_line\tno label", "empty.JPEG\tempty file", "is not an integer"):
        assert what in report, what
    # Pillow's reason without the stream's repr ("<_io.BytesIO object at 0x...>"): the same every run.
    assert ("flipped.JPEG\tcannot decode: unknown data OpenCV cannot decode; Pillow: cannot identify image file\n"
            in report), report
    assert " at 0x" not in report and "<_io" not in report
    # PNG bytes under a .JPEG name: decoded by content; re-encoded as JPEG (the name's type).
    d = Datum.FromString(records[b"00000003_png_named.JPEG"])
    assert d.data[:3] == b"\xff\xd8\xff"
    ok, expected = cv2.imencode(".jpeg", cv2.imdecode(png, cv2.IMREAD_COLOR))
    assert d.data == expected.tobytes()
    # CMYK -> BGR, equal to Pillow's RGB conversion of the same file (re-encoded, so JPEG loss).
    d = Datum.FromString(records[b"00000004_cmyk.JPEG"])
    ref = np.asarray(Image.open(root / "cmyk.JPEG").convert("RGB"))[:, :, ::-1].astype(int)
    ok, expected = cv2.imencode(".jpeg", np.ascontiguousarray(ref.astype(np.uint8)))
    assert d.data == expected.tobytes()
    # Grey JPEG in a colour DB: 3 equal channels.
    d = Datum.FromString(records[b"00000005_gray.JPEG"])
    dec = cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert dec.ndim == 3 and dec.shape[2] == 3

    # Raw mode: the CMYK file through Pillow is exactly Pillow's conversion.
    db = tmp_path / "raw"
    convert_imageset(str(root), str(listfile), str(db), Options(), progress=False, log=lambda *a: None)
    d = Datum.FromString(read_lmdb(db)[b"00000004_cmyk.JPEG"])
    np.testing.assert_array_equal(np.frombuffer(d.data, np.uint8).reshape(3, 30, 40), ref.transpose(2, 0, 1))


def test_errors(photos, tmp_path):
    root, listfile, names = photos
    r = call_tool("convert_imageset", root, listfile, tmp_path / "x", "--backend", "leveldb", check=False)
    assert r.returncode == 1 and "leveldb" in r.stderr.lower() and "Traceback" not in r.stderr
    with pytest.raises(CaffeError, match="--check_size"):
        convert_imageset(str(root), str(listfile), str(tmp_path / "y"), Options(check_size=True),
                         progress=False, log=lambda *a: None)
    (tmp_path / "z").mkdir()
    r = call_tool("convert_imageset", root, listfile, tmp_path / "z", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr


def test_map_size_doubles(photos, tmp_path):
    root, listfile, names = photos
    listfile.write_text("".join(f"{names[i % 4]} {i}\n" for i in range(60)))
    db = tmp_path / "grow"
    out = convert_imageset(str(root), str(listfile), str(db), Options(), commit_every=7, map_size=64 * 1024,
                           progress=False, log=lambda *a: None)
    assert out["map_doublings"] >= 2
    assert len(read_lmdb(db)) == 60


def test_resume_after_kill_9(photos, tmp_path):
    root, listfile, names = photos
    n = 1200
    listfile.write_text("".join(f"{names[i % 5]} {i}\n" for i in range(n)))
    args = [f"{root}/", listfile, "--shuffle", "--seed", "7", "--encoded", "--encode_type", "png",
            "--commit_every", "5", "--quiet"]
    call_tool("convert_imageset", *args[:2], tmp_path / "full", *args[2:])
    partial = tmp_path / "partial"
    proc = subprocess.Popen([PY, os.path.join(ROOT, "tools", "convert_imageset.py"), *map(str, args[:2]),
                             str(partial), *map(str, args[2:])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = 0
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if (partial / "data.mdb").exists():
            try:
                env = lmdb.open(str(partial), readonly=True, lock=False)
                committed = env.stat()["entries"]
                env.close()
            except lmdb.Error:
                committed = 0
            if committed >= 20:
                break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "converter finished before it could be killed"
    before = len(read_lmdb(partial))
    assert 0 < before < n
    r = call_tool("convert_imageset", *args[:2], partial, *args[2:], "--resume")
    assert "Resuming" in r.stdout
    assert read_lmdb(partial) == read_lmdb(tmp_path / "full")
    # Resuming with other options is refused.
    r = call_tool("convert_imageset", *args[:2], partial, "--resume", "--quiet", check=False)
    assert r.returncode == 1 and "cannot resume" in r.stderr


def test_root_missing_or_nothing_readable(photos, tmp_path):
    """A ROOT that does not exist is refused up front (no DB, no report). A run where every line
    is skipped exits 1 naming the reason, keeps the skip report and removes the empty DB, so the
    corrected rerun needs no cleanup; one readable image is enough to succeed."""
    root, listfile, names = photos
    db = tmp_path / "db"
    r = call_tool("convert_imageset", tmp_path / "no_such_root", listfile, db, "--quiet", check=False)
    assert r.returncode == 1 and "no_such_root: no such directory" in r.stderr and "Traceback" not in r.stderr
    assert not db.exists() and not (tmp_path / "db.skipped.txt").exists()
    r = call_tool("convert_imageset", listfile, listfile, db, "--quiet", check=False)
    assert r.returncode == 1 and "list.txt: not a directory" in r.stderr and not db.exists()

    wrong_root = tmp_path / "empty_root"
    wrong_root.mkdir()
    r = call_tool("convert_imageset", wrong_root, listfile, db, "--quiet", check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "no records written: all 5 lines" in r.stderr and "missing file" in r.stderr
    assert not db.exists()
    report = (tmp_path / "db.skipped.txt").read_text().splitlines()
    assert report == [f"{i:08d}_{n}\t{n}\tmissing file" for i, n in enumerate(names)]
    with pytest.raises(CaffeError, match="no records written"):
        convert_imageset(str(wrong_root), str(listfile), str(db), Options(), progress=False, log=lambda *a: None)

    call_tool("convert_imageset", root, listfile, db, "--quiet")     # the fixed rerun
    assert len(read_lmdb(db)) == 5 and not (tmp_path / "db.skipped.txt").exists()

    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(CaffeError, match="empty.txt: no lines"):
        convert_imageset(str(root), str(tmp_path / "empty.txt"), str(tmp_path / "e"), Options(),
                         progress=False, log=lambda *a: None)
    assert not (tmp_path / "e").exists()


def test_encode_type_must_be_writable(photos, tmp_path):
    """--encode_type gif (or ppm for grey) is refused with the valid list, before a DB exists;
    a valid type is what the records hold."""
    root, listfile, names = photos
    r = call_tool("convert_imageset", root, listfile, tmp_path / "g", "--encoded", "--encode_type", "gif",
                  check=False)
    assert r.returncode == 1 and "--encode_type gif" in r.stderr and "Traceback" not in r.stderr
    valid = r.stderr.split("valid: ")[1].strip().split(", ")
    assert {"jpg", "png", "bmp", "tiff", "ppm"} <= set(valid) and "gif" not in valid and "pgm" not in valid
    assert not (tmp_path / "g").exists()
    with pytest.raises(CaffeError, match=r"--encode_type ppm: .*grey.*valid: .*\bpgm\b"):
        convert_imageset(str(root), str(listfile), str(tmp_path / "p"), Options(encoded=True, gray=True,
                         encode_type="ppm"), progress=False, log=lambda *a: None)
    magic = {"bmp": b"BM", "pgm": b"P5", "ppm": b"P6", "tif": b"II*\x00"}
    for ext, gray in (("BMP", False), (".pgm", True), ("ppm", False), ("tif", False)):
        db = tmp_path / f"enc_{ext.strip('.')}"
        convert_imageset(str(root), str(listfile), str(db), Options(encoded=True, gray=gray, encode_type=ext),
                         progress=False, log=lambda *a: None)
        ext = ext.lower().strip(".")
        d = Datum.FromString(read_lmdb(db)[b"00000001_cls a/chelsea.jpg"])
        assert d.encoded and d.data.startswith(magic[ext]), ext
        flag = cv2.IMREAD_GRAYSCALE if gray else cv2.IMREAD_COLOR
        np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(d.data, np.uint8), flag),
                                      cv2.imread(str(root / "cls a/chelsea.jpg"), flag))
        import json
        assert json.loads((db / "convert_imageset.json").read_text())["options"]["encode_type"] == ext


def test_encode_type_alone_implies_encoded(photos, tmp_path):
    """Caffe's convert_imageset: "encode_type specified, assuming encoded=true." -- the records are
    re-encoded as that type (here after a resize), not refused and not stored raw."""
    root, listfile, names = photos
    db = tmp_path / "png_db"
    r = call_tool("convert_imageset", root, listfile, db, "-encode_type", "png",
                  "-resize_height", "20", "-resize_width", "30")
    assert "assuming encoded=true" in r.stdout + r.stderr
    d = Datum.FromString(read_lmdb(db)[b"00000001_cls a/chelsea.jpg"])
    assert d.encoded and d.data.startswith(b"\x89PNG")
    want = cv2.resize(cv2.imread(str(root / "cls a/chelsea.jpg"), cv2.IMREAD_COLOR), (30, 20))
    np.testing.assert_array_equal(cv2.imdecode(np.frombuffer(d.data, np.uint8), cv2.IMREAD_COLOR), want)
