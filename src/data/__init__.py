"""The competition's input path: the layout's tables and their checks (`tables`), person-level folds
(`folds`), face boxes (`faces`), the crop, resize and augmentation of each photo (`transforms`), the decoded
cache (`cache`) and the batch sources (`batches`); data in the competition's layout made here: the synthetic
demo set (`demo`) and the stand-in's held-out persons (`standin_persons`). Training persons made beyond these
photos: persons/."""
