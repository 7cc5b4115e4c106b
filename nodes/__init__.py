"""ComfyUI nodes of the package."""

from .api_key_info import ApiKeyInfo

NODE_CLASS_MAPPINGS = {"ApiKeyInfo": ApiKeyInfo}
NODE_DISPLAY_NAME_MAPPINGS = {"ApiKeyInfo": "API Key Info (who queued this)"}
