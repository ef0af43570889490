"""Training persons beyond the competition's own: outside face photos as they come (`outside_layouts`), checked
and given drawn masks (`extra`, `mask_draw`), confident eval photos of a finished run (`pseudo`), the synthetic
demo set (`demo`) and the stand-in's held-out persons (`standin_persons`). Built on data/ (the competition's
input path); the pipeline joins them to a fold's training rows."""
