# Stand-in for ComfyUI's comfy/options.py.
#
# main.py calls enable_args_parsing() *before* importing comfy.cli_args, so the
# real command line is parsed. Anything else that imports comfy.cli_args (for
# example a pytest process importing a custom-node package) gets defaults
# parsed from an empty argument list and never sees pytest's own argv.
args_parsing = False


def enable_args_parsing(enable=True):
    global args_parsing
    args_parsing = enable
