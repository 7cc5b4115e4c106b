"""/workflow_templates and /i18n, modelled on ComfyUI's app/custom_node_manager.py.

ComfyUI scans the folders of folder_paths "custom_nodes". The stand-in also
scans every package loaded with --custom-node (nodes.LOADED_MODULE_DIRS),
because such packages do not have to live under <base>/custom_nodes.
"""
from __future__ import annotations

import glob
import json
import logging
import os

from aiohttp import web

import folder_paths

EXTRA_LOCALE_FILES = ["nodeDefs.json", "commands.json", "settings.json"]
EXAMPLE_WORKFLOW_FOLDER_NAMES = ["example_workflows", "example", "examples", "workflow", "workflows"]


def safe_load_json_file(file_path: str) -> dict:
    if not os.path.exists(file_path):
        return {}
    try:
        with open(file_path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError:
        logging.error(f"Error loading {file_path}")
        return {}


def merge_json_recursive(base, update):
    if not isinstance(base, dict) or not isinstance(update, dict):
        if isinstance(base, list) and isinstance(update, list):
            return base + update
        return update
    merged = dict(base)
    for key, value in update.items():
        merged[key] = merge_json_recursive(merged[key], value) if key in merged else value
    return merged


def _custom_node_dirs(extra_dirs):
    dirs = []
    for folder in folder_paths.get_folder_paths("custom_nodes"):
        dirs.extend(sorted(glob.glob(os.path.join(glob.escape(folder), "*/"))))
    for d in extra_dirs:
        d = os.path.join(d, "")
        if d not in dirs:
            dirs.append(d)
    return dirs


class CustomNodeManager:
    def __init__(self):
        self._translations = None
        self.extra_dirs = []  # folders of packages loaded with --custom-node

    def build_translations(self):
        """{lang: {...main.json, nodeDefs: ..., commands: ..., settings: ...}} from */locales/<lang>/."""
        if self._translations is not None:
            return self._translations
        translations = {}
        for custom_node_dir in _custom_node_dirs(self.extra_dirs):
            locales_dir = os.path.join(custom_node_dir, "locales")
            if not os.path.exists(locales_dir):
                continue
            for lang_dir in glob.glob(os.path.join(glob.escape(locales_dir), "*/")):
                lang_code = os.path.basename(os.path.dirname(lang_dir))
                translations.setdefault(lang_code, {})
                node_translations = safe_load_json_file(os.path.join(lang_dir, "main.json"))
                for extra_file in EXTRA_LOCALE_FILES:
                    data = safe_load_json_file(os.path.join(lang_dir, extra_file))
                    if data:
                        node_translations[extra_file.split(".")[0]] = data
                if node_translations:
                    translations[lang_code] = merge_json_recursive(translations[lang_code], node_translations)
        self._translations = translations
        return translations

    def add_routes(self, routes, webapp, loadedModules):
        loaded = list(loadedModules)

        @routes.get("/workflow_templates")
        async def get_workflow_templates(request):
            templates = {}
            for custom_node_dir in _custom_node_dirs(self.extra_dirs):
                pack = os.path.basename(os.path.dirname(custom_node_dir))
                for folder_name in EXAMPLE_WORKFLOW_FOLDER_NAMES:
                    for file in glob.glob(os.path.join(glob.escape(custom_node_dir), folder_name, "*.json")):
                        templates.setdefault(pack, []).append(os.path.splitext(os.path.basename(file))[0])
            return web.json_response(templates)

        for module_name, module_dir in loaded:
            for folder_name in EXAMPLE_WORKFLOW_FOLDER_NAMES:
                workflows_dir = os.path.join(module_dir, folder_name)
                if os.path.exists(workflows_dir):
                    webapp.add_routes([web.static("/api/workflow_templates/" + module_name, workflows_dir)])

        @routes.get("/i18n")
        async def get_i18n(request):
            return web.json_response(self.build_translations())
