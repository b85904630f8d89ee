import pytest

from emit_iad.sources import (
    SourceConfig,
    SyntheticConfig,
    build_image_index,
    write_synthetic_dataset,
)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory):
    """A real image index over a small synthetic dataset (2 objects)."""
    root = tmp_path_factory.mktemp("syn") / "synthetic"
    config = SyntheticConfig(
        seed=0, image_size=64, objects=("wood", "screw"), n_train_good=3, n_test_good=3,
        n_test_per_defect=2,
    )  # fmt: skip
    write_synthetic_dataset(root, config)
    index, _ = build_image_index([SourceConfig("synthetic", "synthetic", str(root))])
    return index
