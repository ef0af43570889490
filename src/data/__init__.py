"""The competition's input path: the layout's tables and their checks (`tables`), person-level folds
(`folds`), face boxes (`faces`), the crop, resize and augmentation of each photo (`transforms`), the decoded
cache (`cache`) and the batch sources (`batches`). Training persons made beyond these photos: persons/."""
