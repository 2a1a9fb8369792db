"""Exact cosine nearest neighbors in blocks (classifiers/neighbors.py): the same answer as a brute-force search
of the whole similarity matrix, whatever the block size, ties included."""
import numpy as np
import pytest

from cnncodes.classifiers.heads.neighbors import nearest


def brute_force(queries, base, k, skip_self=False):
    """Every similarity at once, sorted by (-similarity, row): what `nearest` must equal."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    b = base / np.linalg.norm(base, axis=1, keepdims=True)
    s = (q @ b.T).astype(np.float64)
    if skip_self:
        np.fill_diagonal(s, -np.inf)
    order = np.lexsort((np.broadcast_to(np.arange(len(base)), s.shape), -s), axis=1)[:, :k]
    return order, np.take_along_axis(s, order, axis=1)


def codes(rows, dim=16, seed=0):
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


@pytest.mark.parametrize("block", [7, 64, 4096])
def test_blocks_smaller_or_larger_than_the_data_give_the_brute_force_answer(block):
    queries, base = codes(50, seed=1), codes(130)
    found = nearest(queries, base, 9, block=block)
    index, similarity = brute_force(queries, base, 9)
    assert np.array_equal(found.index, index)
    np.testing.assert_allclose(found.similarity, similarity, atol=1e-6)
    assert (np.diff(found.similarity, axis=1) <= 0).all()  # most similar first


def test_cosine_ignores_length_and_an_exact_copy_is_first_at_similarity_one():
    base = codes(40)
    queries = np.vstack([3.5 * base[17], base[2] + 1e-3 * codes(1, seed=5)[0]])  # a scaled copy, a near copy
    found = nearest(queries, base, 3, block=8)
    assert found.index[:, 0].tolist() == [17, 2]
    assert found.similarity[0, 0] == pytest.approx(1.0, abs=1e-6) and found.similarity[1, 0] > 0.999


@pytest.mark.parametrize("block", [5, 4096])
def test_skip_self_never_returns_the_query_row_but_keeps_a_duplicate_elsewhere(block):
    base = codes(60)
    base[41] = base[12]  # an exact duplicate in the data
    found = nearest(base, base, 4, skip_self=True, block=block)
    assert not (found.index == np.arange(60)[:, None]).any()
    assert found.index[12, 0] == 41 and found.index[41, 0] == 12  # each other's nearest, at similarity 1
    assert found.similarity[12, 0] == pytest.approx(1.0, abs=1e-6)
    index, similarity = brute_force(base, base, 4, skip_self=True)
    assert np.array_equal(found.index, index)


def test_k_larger_than_the_base_gives_every_base_row_in_order():
    queries, base = codes(5, seed=2), codes(6)
    found = nearest(queries, base, 50, block=4)
    assert found.index.shape == (5, 6) and all(sorted(row) == list(range(6)) for row in found.index)
    assert np.array_equal(found.index, brute_force(queries, base, 6)[0])
    assert nearest(base, base, 50, skip_self=True).index.shape == (6, 5)  # every row but itself


@pytest.mark.parametrize("block", [3, 4, 100])
def test_equal_similarities_come_lowest_row_first_whatever_the_block(block):
    """Exact duplicates tie. argpartition alone kept an arbitrary one of the equals at the k-th place, so which
    copy was returned depended on the block size."""
    base = np.repeat(codes(3), 4, axis=0)  # rows 0-3 equal, 4-7 equal, 8-11 equal
    found = nearest(base[[0, 5, 11]], base, 2, block=block)
    assert found.index.tolist() == [[0, 1], [4, 5], [8, 9]]


def test_lazy_and_zero_rows_and_bad_k():
    import dask.array as da

    base = codes(30)
    base[3] = 0  # an all-zero row: similarity 0 to everything, never NaN
    lazy = da.from_array(base, chunks=7)
    found = nearest(codes(4, seed=3), lazy, 5, block=8)
    assert np.array_equal(found.index, nearest(codes(4, seed=3), base, 5).index)
    assert np.isfinite(nearest(base[3:4], base, 5).similarity).all()
    with pytest.raises(ValueError, match="k=0; ask for at least 1"):
        nearest(base, base, 0)
    with pytest.raises(ValueError, match="1 base rows leave no neighbor"):
        nearest(base[:1], base[:1], 1, skip_self=True)
