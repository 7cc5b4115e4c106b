"""Command line flags of the ComfyUI stand-in.

Only the subset of ComfyUI 0.3.64 flags that matter for a pure-Python server
is accepted; defaults, `nargs`/`const` behaviour and validation match
ComfyUI's comfy/cli_args.py. Any flag not listed here makes argparse exit
with status 2, as ComfyUI does for flags it does not know.

Two flags are the stand-in's own: `--custom-node PATH` names a custom-node
package folder (or single .py file) to load in addition to whatever sits in
<base directory>/custom_nodes; `--emulate-system-users` adds what newer
ComfyUI has for "system users" (see folder_paths.py), so a package's code for
newer ComfyUI runs under test too.
"""
import argparse
import os

import comfy.options


def is_valid_directory(path: str) -> str:
    """Same checks ComfyUI applies to --front-end-root and --user-directory."""
    if not os.path.exists(path):
        raise argparse.ArgumentTypeError(f"The path '{path}' does not exist.")
    if not os.path.isdir(path):
        raise argparse.ArgumentTypeError(f"'{path}' is not a directory.")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"You do not have read permissions for '{path}'.")
    return path


parser = argparse.ArgumentParser(description="ComfyUI 0.3.64 server stand-in (no torch).")

# --- network ---------------------------------------------------------------
parser.add_argument("--listen", type=str, default="127.0.0.1", metavar="IP", nargs="?", const="0.0.0.0,::",
                    help="IP address(es) to listen on, comma separated (default: 127.0.0.1). "
                         "Without a value: 0.0.0.0,:: (all IPv4 and IPv6).")
parser.add_argument("--port", type=int, default=8188, help="Set the listen port.")
parser.add_argument("--tls-keyfile", type=str, help="Path to TLS key file; with --tls-certfile serves https.")
parser.add_argument("--tls-certfile", type=str, help="Path to TLS certificate file; with --tls-keyfile serves https.")
parser.add_argument("--enable-cors-header", type=str, default=None, metavar="ORIGIN", nargs="?", const="*",
                    help="Enable CORS with the given origin, or '*' when given without a value.")
parser.add_argument("--max-upload-size", type=float, default=100, help="Maximum upload size in MB.")
parser.add_argument("--enable-compress-response-body", action="store_true", help="Enable compressing response body.")

# --- directories -----------------------------------------------------------
parser.add_argument("--base-directory", type=str, default=None,
                    help="Base directory for models, custom_nodes, input, output, temp and user.")
parser.add_argument("--output-directory", type=str, default=None, help="Output directory. Overrides --base-directory.")
parser.add_argument("--temp-directory", type=str, default=None,
                    help="Temp directory (a 'temp' folder is created inside it). Overrides --base-directory.")
parser.add_argument("--input-directory", type=str, default=None, help="Input directory. Overrides --base-directory.")
parser.add_argument("--user-directory", type=is_valid_directory, default=None,
                    help="User directory (must exist). Overrides --base-directory.")
parser.add_argument("--front-end-root", type=is_valid_directory, default=None,
                    help="Folder holding the web front end (default: this stand-in's web/ folder).")

# --- accepted for compatibility ----------------------------------------------
parser.add_argument("--cpu", action="store_true", help="Accepted and ignored (there is no torch here).")
database_default_path = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "user", "comfyui.db"))
parser.add_argument("--database-url", type=str, default=f"sqlite:///{database_default_path}",
                    help="Accepted and ignored (ComfyUI's own database; the stand-in has none).")
parser.add_argument("--disable-metadata", action="store_true", help="Disable saving prompt metadata in files.")
parser.add_argument("--multi-user", action="store_true", help="Enables per-user storage.")
parser.add_argument("--disable-all-custom-nodes", action="store_true",
                    help="Do not load custom nodes from <base>/custom_nodes nor --custom-node.")
parser.add_argument("--whitelist-custom-nodes", type=str, nargs='+', default=[],
                    help="Custom node folder names to load even with --disable-all-custom-nodes.")
parser.add_argument("--dont-print-server", action="store_true", help="Don't print server output.")
parser.add_argument("--quick-test-for-ci", action="store_true",
                    help="Load everything, build the routes, then exit(0) without serving.")
parser.add_argument("--verbose", default='INFO', const='DEBUG', nargs="?",
                    choices=['DEBUG', 'INFO', 'WARNING', 'ERROR', 'CRITICAL'], help='Set the logging level')
parser.add_argument("--log-stdout", action="store_true",
                    help="Send normal process output to stdout instead of stderr (default).")

cache_group = parser.add_mutually_exclusive_group()
cache_group.add_argument("--cache-classic", action="store_true", help="Use the classic (aggressive) output cache (default).")
cache_group.add_argument("--cache-lru", type=int, default=0, help="Keep up to N node results cached across prompts.")
cache_group.add_argument("--cache-none", action="store_true", help="Do not keep node results between prompts.")

# --- stand-in only ---------------------------------------------------------------
parser.add_argument("--custom-node", dest="custom_node", action="append", default=[], metavar="PATH",
                    help="(stand-in only) Custom-node package folder or .py file to load. Repeatable.")
parser.add_argument("--emulate-system-users", action="store_true",
                    help="(stand-in only) Behave like ComfyUI after 0.3.64 (PR #10966): folder_paths has "
                         "get_system_user_directory(), get_public_user_directory() and SYSTEM_USER_PREFIX, "
                         "and the user manager refuses user ids that start with '__'.")
parser.add_argument("--emulate-jobs-api", action="store_true",
                    help="(stand-in only) Serve newer ComfyUI's job routes (registered as /api/jobs, "
                         "/api/jobs/{job_id}, POST /api/jobs/{job_id}/cancel, POST /api/jobs/cancel) and "
                         "stamp extra_data.create_time on queued prompts, as ComfyUI after 0.3.64 does.")
parser.add_argument("--enable-assets", action="store_true",
                    help="(newer ComfyUI, a small part here) Serve the asset routes: GET /api/assets lists the "
                         "input and output files with an id each, GET /api/assets/{id}/content sends one.")
parser.add_argument("--graceful-signals", action="store_true",
                    help="(stand-in only) Stop cleanly on SIGTERM and SIGINT (close sockets, run on_shutdown "
                         "and on_cleanup, exit 0), which ComfyUI does not do: by default the stand-in handles "
                         "them as ComfyUI 0.3.64 does (SIGTERM kills, Ctrl-C stops the loop, no on_shutdown).")

if comfy.options.args_parsing:
    args = parser.parse_args()
else:
    args = parser.parse_args([])
