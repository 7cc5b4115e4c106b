"""A small part of newer ComfyUI's asset system (``--enable-assets``): files of
the input and output folders get an id, and their bytes are served by id."""
