"""gflags-style argument spelling for the Caffe-compatible tools.

Caffe's tools take `-flag`, `--flag`, `--flag=true` and `--flag=false` for booleans; argparse takes
`--flag`. normalise() rewrites the Caffe spellings so scripts written for Caffe run unchanged.
"""


def normalise(argv, bool_flags, value_flags=()):
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name = arg[1:].split("=", 1)[0]
            if name in bool_flags or name in value_flags:
                arg = "-" + arg
        if arg.startswith("--") and "=" in arg:
            name, value = arg[2:].split("=", 1)
            if name in bool_flags:
                if value.lower() in ("true", "1", "yes"):
                    arg = "--" + name
                elif value.lower() in ("false", "0", "no"):
                    continue
        out.append(arg)
    return out
