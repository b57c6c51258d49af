"""List files for convert_imageset from an ILSVRC-2012 layout or any class-per-folder tree.

ILSVRC-2012 (as Caffe's examples/imagenet and data/ilsvrc12 expect): classes are the wnid folders
of train/ in sorted order, label = index (n01440764 -> 0 ... n15075141 -> 999); train.txt lines are
"wnid/file.JPEG label" relative to train/. Validation images ILSVRC2012_val_%08d.JPEG get their
class from the devkit: data/ILSVRC2012_validation_ground_truth.txt holds one 1-based ILSVRC2012_ID
per line (line i is image i), and data/meta.mat maps ILSVRC2012_ID -> WNID (read with scipy if it
is installed); without scipy give a synsets text file instead (line k = the wnid of ID k, or "ID
wnid" pairs). A "filename,wnid..." CSV (e.g. Kaggle's LOC_val_solution.csv) or "filename wnid"
lines also work, and so does a val/ already sorted into wnid folders. val.txt lines are
"ILSVRC2012_val_00000001.JPEG label" relative to val/.

Any other tree (root/<class>/<images>): classes in sorted order; --val_fraction splits each class
with a permutation seeded by vgg_caffe.rng.key("make_lists", seed, class), so the split is the same
on every run. labels.txt is synset_words-like: one class per line in label order ("wnid words"
when words are known).
"""
import os

from .. import rng
from ..errors import CaffeError

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image(name):
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTS)


def class_folders(root):
    try:
        return sorted(d for d in os.listdir(root) if not d.startswith(".") and os.path.isdir(os.path.join(root, d)))
    except OSError as e:
        raise CaffeError(f"{root}: cannot list ({e.strerror or e})") from None


def scan_tree(root, classes=None):
    """([(relative path, label)], classes) of root/<class>/**/<image>, files sorted."""
    classes = class_folders(root) if classes is None else classes
    if not classes:
        raise CaffeError(f"{root}: no class folders found (expected root/<class>/<images>)")
    index = {c: i for i, c in enumerate(classes)}
    items = []
    for c in classes:
        folder = os.path.join(root, c)
        if not os.path.isdir(folder):
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            rel = os.path.relpath(dirpath, root)
            found += [os.path.join(rel, f).replace(os.sep, "/") for f in sorted(filenames) if is_image(f)]
        items += [(p, index[c]) for p in found]
    return items, classes


def split(items, fraction, seed):
    """Per-class seeded split -> (train, val)."""
    if not 0 <= fraction < 1:
        raise CaffeError(f"--val_fraction must be in [0, 1), got {fraction}")
    by_class = {}
    for p, label in items:
        by_class.setdefault(label, []).append((p, label))
    train, val = [], []
    for label in sorted(by_class):
        group = by_class[label]
        n_val = int(round(fraction * len(group)))
        perm = rng.numpy_rng("make_lists", seed, label).permutation(len(group))
        chosen = set(int(i) for i in perm[:n_val])
        for i, item in enumerate(group):
            (val if i in chosen else train).append(item)
    return train, val


def read_id_to_wnid(meta=None, synsets=None):
    """{ILSVRC2012_ID: (wnid, words)} from the devkit's meta.mat or a synsets text file."""
    mapping = {}
    if meta:
        try:
            from scipy.io import loadmat
        except ImportError:
            raise CaffeError(f"{meta}: reading meta.mat needs scipy (pip install scipy), or pass --synsets "
                             "with a text file of wnids (line k = ILSVRC2012_ID k)") from None
        try:
            synsets_mat = loadmat(meta, squeeze_me=True)["synsets"]
        except Exception as e:
            raise CaffeError(f"{meta}: not the devkit's meta.mat ({e})") from None
        for s in synsets_mat:
            mapping[int(s["ILSVRC2012_ID"])] = (str(s["WNID"]), str(s["words"]))
        return mapping
    with _open_text(synsets) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0].isdigit() and len(parts) >= 2:
                mapping[int(parts[0])] = (parts[1], " ".join(parts[2:]))
            else:
                mapping[n] = (parts[0], " ".join(parts[1:]))
    return mapping


def _open_text(path):
    try:
        return open(path, encoding="utf-8")
    except OSError as e:
        raise CaffeError(f"{path}: cannot read ({e.strerror or e})") from None


def val_from_ground_truth(val_dir, ground_truth, id_to_wnid, wnid_index):
    files = {os.path.splitext(f)[0]: f for f in os.listdir(val_dir) if is_image(f)}
    items = []
    with _open_text(ground_truth) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                ilsvrc_id = int(line.split()[0])
            except ValueError:
                raise CaffeError(f"{ground_truth}:{n}: expected an ILSVRC2012_ID, got {line.strip()!r}") from None
            if ilsvrc_id not in id_to_wnid:
                raise CaffeError(f"{ground_truth}:{n}: ILSVRC2012_ID {ilsvrc_id} is not in the synset mapping")
            wnid = id_to_wnid[ilsvrc_id][0]
            if wnid not in wnid_index:
                raise CaffeError(f"{ground_truth}:{n}: class {wnid} has no train/ folder")
            name = f"ILSVRC2012_val_{n:08d}"
            if name not in files:
                raise CaffeError(f"{ground_truth}:{n}: no image {name}.* in {val_dir}")
            items.append((files[name], wnid_index[wnid]))
    return items


def val_from_csv(val_dir, csv_path, wnid_index):
    files = {os.path.splitext(f)[0]: f for f in os.listdir(val_dir) if is_image(f)}
    items = []
    with _open_text(csv_path) as f:
        for n, line in enumerate(f, 1):
            parts = line.replace(",", " ").split()
            if len(parts) < 2 or not parts[1].startswith("n"):
                if n == 1:
                    continue  # a header such as "ImageId,PredictionString"
                raise CaffeError(f"{csv_path}:{n}: expected 'filename wnid', got {line.strip()!r}")
            name, wnid = os.path.splitext(parts[0])[0], parts[1]
            if wnid not in wnid_index:
                raise CaffeError(f"{csv_path}:{n}: class {wnid} has no train/ folder")
            if name not in files:
                raise CaffeError(f"{csv_path}:{n}: no image {name}.* in {val_dir}")
            items.append((files[name], wnid_index[wnid]))
    return sorted(items)


def write_list(path, items):
    from ..fileio import atomic_write
    atomic_write(path, "".join(f"{p} {label}\n" for p, label in items))
