"""Post-processing: output tensors -> results people can use, one module per decoder.

The decoders a model's ``postprocess`` key can name are the keys of
:data:`edged.postprocess.registry.DECODERS`; the config's allowed values, ``edged check``'s
report and Home Assistant discovery all come from there.
"""
