"""Training persons beyond the competition's own, all of them training-only (fold TRAIN_ONLY): outside persons —
face photos as public sets come (`outside_layouts`), checked (`outside_set`), their landmarks found
(`outside_faces`), seven shots with drawn masks each (`outside_shots`, `mask_draw`), joined as persons
(`outside_persons`) — and confident eval photos of a finished run (`pseudo`). Built on data/ (the competition's
input path); pipeline/training_table.py joins them to the competition's rows."""
