"""Pushes captured log lines to websocket clients that subscribed via
PATCH /internal/logs/subscribe (modelled on ComfyUI's terminal_service.py)."""
import os
import shutil

from app.logger import on_flush


class TerminalService:
    def __init__(self, server):
        self.server = server
        self.cols = None
        self.rows = None
        self.subscriptions = set()
        on_flush(self.send_messages)

    def get_terminal_size(self):
        try:
            size = os.get_terminal_size()
            return (size.columns, size.lines)
        except OSError:
            try:
                size = shutil.get_terminal_size()
                return (size.columns, size.lines)
            except OSError:
                return (80, 24)

    def update_size(self):
        columns, lines = self.get_terminal_size()
        changed = columns != self.cols or lines != self.rows
        self.cols, self.rows = columns, lines
        return {"cols": self.cols, "rows": self.rows} if changed else None

    def subscribe(self, client_id):
        self.subscriptions.add(client_id)

    def unsubscribe(self, client_id):
        self.subscriptions.discard(client_id)

    def send_messages(self, entries):
        if not entries or not self.subscriptions:
            return
        new_size = self.update_size()
        for client_id in list(self.subscriptions):
            if client_id not in self.server.sockets:
                self.unsubscribe(client_id)  # socket went away
                continue
            self.server.send_sync("logs", {"entries": entries, "size": new_size}, client_id)
