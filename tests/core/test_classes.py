import numpy as np

from src.core import classes


def test_class_table_all_18():
    # the competition's table, written out: class = mask*6 + gender*3 + age
    expected = {}
    for mask in range(3):
        for gender in range(2):
            for age in range(3):
                expected[(mask, gender, age)] = 6 * mask + 3 * gender + age
    assert sorted(expected.values()) == list(range(18))
    for (m, g, a), c in expected.items():
        assert int(classes.encode(m, g, a)) == c
        assert tuple(int(v) for v in classes.decode(c)) == (m, g, a)
    assert classes.class_name(0) == "wear/M/<30"
    assert classes.class_name(17) == "not_worn/F/>=60"
    assert classes.class_name(10) == "incorrect/F/30-59"


def test_age_band_boundaries():
    ages = np.array([18, 29, 30, 54, 55, 59, 60, 75])
    assert classes.age_band(ages).tolist() == [0, 0, 1, 1, 1, 1, 2, 2]
    assert classes.age_band(ages, boundary=55).tolist() == [0, 0, 1, 1, 2, 2, 2, 2]
    assert classes.age_band(59) == 1 and classes.age_band(60) == 2


def test_shot_masks():
    assert [classes.SHOT_MASK[s] for s in classes.SHOTS] == [0, 0, 0, 0, 0, 1, 2]


def test_subtask_marginals_sum_the_right_classes():
    p = np.zeros((1, 18))
    p[0, classes.encode(1, 0, 2)] = 0.7
    p[0, classes.encode(2, 1, 0)] = 0.3
    mask, gender, age = classes.subtask_probs(p)
    np.testing.assert_allclose(mask[0], [0, 0.7, 0.3])
    np.testing.assert_allclose(gender[0], [0.7, 0.3])
    np.testing.assert_allclose(age[0], [0.3, 0, 0.7])
