"""A trained model, loaded, drawn, reported and shared; one direction, lowest first:

- `folder`: the pretrained folder format, and reading one (`load_folder`);
- `hub`: `hf://` references and fetching a folder from the Hugging Face Hub;
- `load`: any checkpoint argument (.pt, .safetensors, folder, hf://) -> (model, meta);
- `draw`: overlays, report figures and training curves (matplotlib);
- `predict`: the `Predictor` API and folder runs;
- `report`: the run report of `gsag demo`;
- `export`: ONNX and `torch.export` programs;
- `card`: the model card of a pretrained folder;
- `save`: writing a pretrained folder (`save_pretrained`);
- `push`: uploading one to the Hub (`push_to_hub`).

Nothing is imported here: `import gsag.trained.load` loads what loading needs and no more.
"""
