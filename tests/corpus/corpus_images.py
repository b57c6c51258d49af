"""Corpus: image lists, images and databases through convert_imageset and compute_image_mean:
bad lists, unreadable images, headers claiming more pixels than OpenCV decodes, labels beyond
int32, databases that are not ours, outputs under regular files."""
import os
import random
import struct
import zlib

import numpy as np

from corpus_cases import Case


# ----------------------------------------------------------------------------------------------
# Images, lists and databases
# ----------------------------------------------------------------------------------------------

def png_header(w, h):
    """A few hundred bytes of PNG whose header claims w x h pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 49)) + chunk(b"IEND", b"")


def write_images(d, rng, n=3, size=(10, 8)):
    import cv2

    os.makedirs(os.path.join(d, "imgs"), exist_ok=True)
    names = []
    for i in range(n):
        img = np.array([[[rng.randrange(256) for _ in range(3)] for _ in range(size[0])] for _ in range(size[1])],
                       np.uint8)
        name = f"img{i}.png"
        cv2.imwrite(os.path.join(d, "imgs", name), img)
        names.append(name)
    return names


def _list(d, lines, name="list.txt"):
    with open(os.path.join(d, name), "w") as f:
        f.write("".join(line + "\n" for line in lines))
    return os.path.join(d, name)


def imageset_cases(rng):
    out = []

    def argv(d, listfile, *flags):
        return [os.path.join(d, "imgs"), listfile, os.path.join(d, "db"), "--quiet", *flags]

    def case(name, build, expect, keep=None):
        out.append(Case(f"imageset/{name}/convert_imageset", "convert_imageset", build, expect,
                        absent=() if keep else ("db",), keep=keep or {}))

    def no_labels(d):
        names = write_images(d, rng)
        return argv(d, _list(d, names))
    case("no_labels", no_labels, ("db", "list.txt", "no label"))

    def missing_images(d):
        write_images(d, rng, 0)
        return argv(d, _list(d, [f"gone{i}.png {i}" for i in range(3)]))
    case("missing_images", missing_images, ("db", "missing file"))

    def truncated(d):
        import cv2
        write_images(d, rng, 0)
        ok, jpg = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))
        data = jpg.tobytes()
        with open(os.path.join(d, "imgs", "cut.jpg"), "wb") as f:
            f.write(data[:rng.randrange(len(data) // 2, len(data) - 4)])
        return argv(d, _list(d, ["cut.jpg 0"]))
    case("truncated_jpeg", truncated, ("db", "truncated"))

    def header_pixels(d):
        write_images(d, rng, 0)
        side = rng.choice([40000, 50000, 65000])
        with open(os.path.join(d, "imgs", "bomb.png"), "wb") as f:
            f.write(png_header(side, side))
        return argv(d, _list(d, ["bomb.png 1"]))
    case("header_claims_too_many_pixels", header_pixels, ("db", "header claims", "CV_IO_MAX_IMAGE_PIXELS"))

    def label_overflow(d):
        names = write_images(d, rng, 2)
        return argv(d, _list(d, [f"{names[0]} {2 ** 31 + rng.randrange(100)}", f"{names[1]} -{2 ** 33}"]))
    case("label_overflows_int32", label_overflow, ("db", "int32"))

    def garbage_image(d):
        write_images(d, rng, 0)
        with open(os.path.join(d, "imgs", "noise.jpg"), "wb") as f:
            f.write(bytes(rng.randrange(256) for _ in range(300)))
        return argv(d, _list(d, ["noise.jpg 0"]))
    case("garbage_image", garbage_image, ("db", "noise.jpg"))

    def root_missing(d):
        return [os.path.join(d, "nope"), _list(d, ["a.png 0"]), os.path.join(d, "db"), "--quiet"]
    case("root_missing", root_missing, ("nope",))

    def root_is_file(d):
        with open(os.path.join(d, "rootfile"), "w") as f:
            f.write("x")
        return [os.path.join(d, "rootfile"), _list(d, ["a.png 0"]), os.path.join(d, "db"), "--quiet"]
    case("root_is_a_file", root_is_file, ("rootfile",))

    def list_missing(d):
        write_images(d, rng, 1)
        return argv(d, os.path.join(d, "nolist.txt"))
    case("list_missing", list_missing, ("nolist.txt",))

    def list_not_utf8(d):
        write_images(d, rng, 1)
        with open(os.path.join(d, "list.txt"), "wb") as f:
            f.write(b"img0.png 0\n\xff\xfe\xfd 1\n")
        return argv(d, os.path.join(d, "list.txt"))
    case("list_not_utf8", list_not_utf8, ("list.txt",))

    def list_empty(d):
        write_images(d, rng, 1)
        return argv(d, _list(d, ["", "   "]))
    case("list_empty", list_empty, ("list.txt",))

    def bad_encode(d):
        names = write_images(d, rng, 1)
        return argv(d, _list(d, [f"{names[0]} 0"]), "--encoded", "--encode_type", "jpeg2001")
    case("bad_encode_type", bad_encode, ("--encode_type", "jpeg2001"))

    def negative_resize(d):
        names = write_images(d, rng, 1)
        return argv(d, _list(d, [f"{names[0]} 0"]), "--resize_height", "-3", "--resize_width", "4")
    case("negative_resize", negative_resize, ("--resize_height",))

    def resize_and_min_side(d):
        names = write_images(d, rng, 1)
        return argv(d, _list(d, [f"{names[0]} 0"]), "--resize_height", "8", "--resize_width", "8", "--min_side", "8")
    case("min_side_with_resize", resize_and_min_side, ("--min_side",))

    def check_size(d):
        import cv2
        names = write_images(d, rng, 2)
        cv2.imwrite(os.path.join(d, "imgs", "other.png"), np.zeros((5, 7, 3), np.uint8))
        return argv(d, _list(d, [f"{names[0]} 0", f"{names[1]} 1", "other.png 2"]), "--check_size")
    case("check_size_mismatch", check_size, ("other.png", "--check_size"))

    def db_exists(d):
        names = write_images(d, rng, 1)
        os.makedirs(os.path.join(d, "db"), exist_ok=True)
        with open(os.path.join(d, "db", "data.mdb"), "wb") as f:
            f.write(b"an earlier database")
        return argv(d, _list(d, [f"{names[0]} 0"]))
    case("db_exists", db_exists, ("db", "already exists"), keep={"db/data.mdb": b"an earlier database"})

    def db_under_file(d):
        names = write_images(d, rng, 1)
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("a regular file")
        return [os.path.join(d, "imgs"), _list(d, [f"{names[0]} 0"]), os.path.join(d, "afile", "db"), "--quiet"]
    case("db_under_a_file", db_under_file, ("afile",), keep={"afile": b"a regular file"})

    def resume_foreign(d):
        names = write_images(d, rng, 1)
        os.makedirs(os.path.join(d, "db"), exist_ok=True)
        with open(os.path.join(d, "db", "notes.txt"), "w") as f:
            f.write("mine")
        return argv(d, _list(d, [f"{names[0]} 0"]), "--resume")
    case("resume_not_ours", resume_foreign, ("db", "cannot resume"), keep={"db/notes.txt": b"mine"})
    return out


def _lmdb(path, values):
    from vgg_caffe.data.db import Writer

    w = Writer(path)
    for i, v in enumerate(values):
        w.put(f"{i:08d}_r{i}.png", v)
    w.close()


def _raw(c, h, w, rng, label=0):
    from vgg_caffe.data import datum

    img = np.array([rng.randrange(256) for _ in range(c * h * w)], np.uint8).reshape(h, w, c)
    return datum.from_image(img, label).SerializeToString()


def mean_cases(rng):
    from vgg_caffe.proto import pb

    out = []

    def case(name, build, expect, keep=None):
        out.append(Case(f"mean/{name}/compute_image_mean", "compute_image_mean", build, expect,
                        absent=tuple(p for p in ("mean.binaryproto", "mean.json") if p not in (keep or {})),
                        keep=keep or {}))

    def db_missing(d):
        return [os.path.join(d, "nodb"), os.path.join(d, "mean.binaryproto")]
    case("db_missing", db_missing, ("nodb",))

    def db_is_file(d):
        with open(os.path.join(d, "dbfile"), "w") as f:
            f.write("not an lmdb")
        return [os.path.join(d, "dbfile"), os.path.join(d, "mean.binaryproto")]
    case("db_is_a_file", db_is_file, ("dbfile",))

    def values_case(name, values_fn, expect, extra=(), keep=None):
        def build(d):
            _lmdb(os.path.join(d, "db"), values_fn(random.Random(name)))
            return [os.path.join(d, "db"), os.path.join(d, "mean.binaryproto"), *extra]
        case(name, build, ("db",) + expect, keep)

    values_case("not_a_datum", lambda r: [_raw(3, 4, 4, r), b"\xff\xff\xff\xff\x0fjunk"], ("00000001_r1.png",))
    values_case("byte_count_mismatch",
                lambda r: [_raw(3, 4, 4, r), pb.Datum(channels=3, height=4, width=4, data=b"\x01" * 40).SerializeToString()],
                ("00000001_r1.png", "48"))
    values_case("channels_change", lambda r: [_raw(3, 4, 4, r), _raw(1, 4, 4, r)], ("00000001_r1.png",))
    values_case("check_size_mixed", lambda r: [_raw(3, 4, 4, r), _raw(3, 5, 4, r)], ("00000001_r1.png",),
                extra=("--check_size",))
    values_case("encoded_garbage",
                lambda r: [pb.Datum(data=bytes(r.randrange(256) for _ in range(64)), encoded=True).SerializeToString()],
                ("00000000_r0.png", "decode"))
    values_case("empty_datum", lambda r: [pb.Datum(label=1).SerializeToString()], ("00000000_r0.png", "empty"))

    def out_under_file(d):
        _lmdb(os.path.join(d, "db"), [_raw(3, 4, 4, rng)])
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("a regular file")
        return [os.path.join(d, "db"), os.path.join(d, "afile", "mean.binaryproto")]
    case("out_under_a_file", out_under_file, ("afile",), keep={"afile": b"a regular file"})

    def json_under_file(d):
        _lmdb(os.path.join(d, "db"), [_raw(3, 4, 4, rng)])
        with open(os.path.join(d, "afile"), "w") as f:
            f.write("a regular file")
        return [os.path.join(d, "db"), os.path.join(d, "mean.binaryproto"), "--mean_pixel_out",
                os.path.join(d, "afile", "m.json")]
    case("pixel_json_under_a_file", json_under_file, ("afile",), keep={"afile": b"a regular file"})

    def damaged_keeps_old(d):
        _lmdb(os.path.join(d, "db"), [_raw(3, 4, 4, rng), b"\xff\xff\xff\xff\x0fjunk"])
        with open(os.path.join(d, "mean.binaryproto"), "wb") as f:
            f.write(b"an earlier mean")
        return [os.path.join(d, "db"), os.path.join(d, "mean.binaryproto")]
    case("damaged_keeps_earlier_mean", damaged_keeps_old, ("db",), keep={"mean.binaryproto": b"an earlier mean"})
    return out
