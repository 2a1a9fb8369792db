"""Hostile-input rows: inputs. Each row is an Attack (tests/hostile.py); test_hostile.py runs them.

Rows whose command would make a new store use `--store {tmp}/new`; test_cli.py also checks that no such
store is left behind."""
import io
import tarfile
import zipfile
from pathlib import Path

from hostile import Attack

NEW = "{tmp}/new"
ESC = "\x1b]0;pwned\x07\x1b[2J"  # sets the window title, then clears the screen


def tree(tmp: Path, classes=("cat", "dog")) -> Path:
    from conftest import write_mixed_tree

    return write_mixed_tree(tmp / "tree", classes=classes, per_class=2)


def cut_tar(store, tmp):
    """A tar cut where a member's header starts: tarfile sees a clean end and lists only what is left."""
    with tarfile.open(tmp / "cut.tar", "w") as tar:
        tar.add(tree(tmp), arcname="pets")
    with tarfile.open(tmp / "cut.tar") as tar:
        offset = tar.getmembers()[-3].offset
    with open(tmp / "cut.tar", "r+b") as f:
        f.truncate(offset)


def shared_name_tar(store, tmp):
    """A cat, then a dog stored under the cat's name: extracting keeps the dog."""
    root = tree(tmp)
    dog = (root / "train" / "dog" / "001.png").read_bytes()
    with tarfile.open(tmp / "twice.tar", "w") as tar:
        tar.add(root, arcname=".")
        info = tarfile.TarInfo("train/cat/001.png")
        info.size = len(dog)
        tar.addfile(info, io.BytesIO(dog))


def shared_name_zip(store, tmp):
    import warnings

    root = tree(tmp)
    with zipfile.ZipFile(tmp / "twice.zip", "w") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate it writes
        for f in sorted(root.rglob("*")):
            z.write(f, f.relative_to(root).as_posix())
        z.writestr("train/cat/001.png", (root / "train" / "dog" / "001.png").read_bytes())


def one_class(store, tmp):
    tree(tmp, classes=("cat",))


def two_classes(store, tmp):
    tree(tmp)


def not_weights(store, tmp):
    """A photo named like a weights file."""
    (tmp / "photo.weights.h5").write_bytes(b"\xff\xd8\xff\xe0 a JPEG, not HDF5")


def vgg_weights(store, tmp):
    """A real Keras weights file, of another network."""
    import keras

    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(
        tmp / "vgg16.weights.h5")


def features_on_new_store(*args):
    return ("features", *args, "--store", NEW, "--quiet")


EMPTY_STORE = [("features", "--dataset", "digits"), ("info",), ("fit", "--head", "logreg"),
               ("kfold", "--head", "logreg"),
               ("export", "--out", "{tmp}/codes.npz"), ("runs",), ("report",), ("baseline", "cnn")]

INPUTS_ATTACKS = [
    Attack("layers below the backbone's smallest size", ("layers", "resnet50", "--size", "8"),
           "--size 8 is too small for resnet50, which takes at least 32x32 px"),
    Attack("tar cut at a header boundary", features_on_new_store("--dataset", "folder:{tmp}/cut.tar"),
           r"cut\.tar ends before its end-of-archive marker, after \d+ members: it was cut short", cut_tar),
    Attack("a name two tar members share", features_on_new_store("--dataset", "folder:{tmp}/twice.tar"),
           r"twice\.tar/train/cat/001\.png is a name 2 members of the archive share .*--skip-bad", shared_name_tar),
    Attack("a name two zip members share", features_on_new_store("--dataset", "folder:{tmp}/twice.zip"),
           r"twice\.zip/train/cat/001\.png is a name 2 members of the archive share .*--skip-bad", shared_name_zip),
    Attack("one class folder", features_on_new_store("--dataset", "folder:{tmp}/tree"),
           r"tree has one class folder, 'cat': a classifier needs at least two classes", one_class),
    Attack("folder: without a path", features_on_new_store("--dataset", "folder:"),
           r"--dataset 'folder:' names no folder: give folder:PATH"),
    Attack("escape sequences in a path", features_on_new_store("--dataset", f"folder:{{tmp}}/{ESC}nowhere"),
           r"\\x1b\]0;pwned\\x07\\x1b\[2Jnowhere does not exist"),
    Attack("scheduler without a port", features_on_new_store("--dataset", "digits", "--scheduler", "bogus"),
           r"--scheduler bogus is not a scheduler address \(missing port"),
    Attack("scheduler of an unknown scheme", features_on_new_store("--dataset", "digits", "--scheduler", "foo://x:1"),
           r"--scheduler foo://x:1 is not a scheduler address \(unknown scheme foo://"),
    Attack("kfold on a malformed scheduler address",
           ("kfold", "--store", "{store}", "--head", "logreg", "--scheduler", "localhost:notaport", "--quiet"),
           r"--scheduler localhost:notaport is not a scheduler address"),
    Attack("a photo given as Keras weights",
           features_on_new_store("--dataset", "digits", "--weights", "{tmp}/photo.weights.h5"),
           r"photo\.weights\.h5 is not a Keras weights file .*for resnet50", not_weights),
    Attack("a photo given as an efficientnet_lite checkpoint",
           features_on_new_store("--dataset", "digits", "--backbone", "efficientnet_lite0", "--weights",
                                 "{tmp}/photo.weights.h5"),
           r"photo\.weights\.h5 is not a usable efficientnet_lite0 checkpoint: neither a PyTorch file", not_weights),
    Attack("weights of another network", features_on_new_store("--dataset", "digits", "--weights",
                                                               "{tmp}/vgg16.weights.h5", "--size", "32"),
           r"vgg16\.weights\.h5 does not fit resnet50 without its top", vgg_weights),
    Attack("features --scheduler ''", ("features", "--dataset", "digits", "--store", "{store}", "--scheduler", ""),
           r"--scheduler  is not a scheduler address"),
    Attack("a batch no memory holds", ("features", "--dataset", "digits", "--store", "{store}", "--batch-size",
                                       "99999999999"), r"--batch-size '99999999999' is neither a whole number from 1"),
    Attack("a chunk no memory holds", ("features", "--dataset", "digits", "--store", "{store}", "--chunk-size",
                                       "99999999999999999999"), r"'--chunk-size'.* is not in the range", code=2),
    Attack("a worker process for every pid", ("features", "--dataset", "digits", "--store", "{store}", "--workers",
                                              "100000"), r"'--workers': 100000 is not in the range", code=2),
    Attack("a seed no HDF5 attribute holds", features_on_new_store("--dataset", "digits", "--seed", str(2**70)),
           r"'--seed'.* is not in the range", code=2),
    *[Attack(f"{args[0]} --store ''", (*args, "--store", ""), r"'--store'.*an empty path", code=2)
      for args in EMPTY_STORE],
    Attack("export --out ''", ("export", "--store", "{store}", "--out", ""), r"'--out'.*an empty path", code=2),
    Attack("report --out ''", ("report", "--store", "{store}", "--out", ""), r"'--out'.*an empty path", code=2),
    Attack("an --out name longer than a file system allows", ("export", "--store", "{store}", "--out",
                                                             "{tmp}/" + "猫" * 90 + ".npz"),
           r"^error: File name too long: .* - check the path, or choose another"),
    Attack("features --data-dir ''", features_on_new_store("--dataset", "cifar10", "--data-dir", ""),
           r"'--data-dir'.*an empty path", code=2),
    Attack("features --views 0", ("features", "--dataset", "digits", "--store", "{store}", "--views", "0"),
           r"'--views': 0 is not in the range 1<=x<=64", code=2),
    Attack("more views than a store should hold", ("features", "--dataset", "digits", "--store", "{store}", "--views",
                                                   "65"), r"'--views': 65 is not in the range 1<=x<=64", code=2),
    Attack("an empty name in a list of layers",
           ("features", "--dataset", "digits", "--store", "{store}", "--layer", "conv5_block3_out,,pool1_pool"),
           r"--layer 'conv5_block3_out,,pool1_pool' has an empty name"),
    Attack("an unknown layer in a list of layers",
           ("features", "--dataset", "digits", "--store", "{store}", "--layer", "conv5_block3_out,conv9_out"),
           r"resnet50 has no layer 'conv9_out'"),
    Attack("a layer listed twice", ("features", "--dataset", "digits", "--store", "{store}", "--layer",
                                    "pool1_pool,pool1_pool"), r"--layer names pool1_pool twice"),
    Attack("an empty part of A+B", ("fit", "--store", "{store}", "--head", "logreg", "--features", "r50+"),
           r"--features 'r50\+' has an empty part"),
    Attack("an unknown part of A+B", ("fit", "--store", "{store}", "--head", "logreg", "--features", "r50+nosuch"),
           r"no feature set 'nosuch'"),
    Attack("a set joined to itself", ("export", "--store", "{store}", "--features", "r50+R50", "--out", "{tmp}/c.npz"),
           r"names r50 twice"),
    Attack("a view area without views",
           ("features", "--dataset", "digits", "--store", "{store}", "--view-area", "0.5"),
           r"--view-area 0.5 sets how views crop: give --views K too"),
    Attack("views of images too small to crop",
           features_on_new_store("--dataset", "folder:{tmp}/tree", "--image-size", "7", "--views", "2"),
           r"--views 2: the stored images are 7 px a side, too small to crop; views need at least 8 px", two_classes),
]
