"""Label files and output post-processing."""

import numpy as np
import pytest
from conftest import CORAL

from edge_runtime import LabelError, read_labels
from edge_runtime.model.labels import parse_labels
from edge_runtime.model.postprocess import dequantize, softmax, top_k


def test_coral_label_files():
    imagenet = read_labels(CORAL / "imagenet_labels.txt")
    assert len(imagenet) == 1001 and imagenet[0] == "background" and imagenet[283] == "tiger cat"
    birds = read_labels(CORAL / "inat_bird_labels.txt")
    assert birds[659].startswith("Poecile atricapillus")


def test_numbered_labels_with_gaps():
    assert parse_labels("0 cat\n2 dog\n") == ["cat", "1", "dog"]
    assert parse_labels("0\n1\n2\n") == ["0", "1", "2"]  # digits as labels are plain labels
    assert parse_labels("a\n\nb\n\n\n") == ["a", "", "b"]


def test_unreadable_label_files(tmp_path):
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x01garbage")
    with pytest.raises(LabelError, match="bin.txt"):
        read_labels(tmp_path / "bin.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(LabelError, match="empty"):
        read_labels(tmp_path / "empty.txt")


def test_dequantize_widens_before_subtracting():
    assert dequantize(np.array([255, 0], np.uint8), 0.5, 0).tolist() == [127.5, 0.0]
    assert dequantize(np.array([-128, 127], np.int8), 1 / 256, -128).tolist() == [0.0, 255 / 256]
    assert dequantize(np.array([0, 255], np.uint8), 0.1, 128).tolist() == pytest.approx([-12.8, 12.7])


def test_top_k_orders_ties_by_index_and_applies_threshold():
    labels = list("abcde")
    scores = np.array([0.1, 0.3, 0.3, 0.05, 0.25], np.float32)
    assert [c.index for c in top_k(scores, labels, 3)] == [1, 2, 4]
    assert [c.label for c in top_k(scores, labels, 5, threshold=0.2)] == ["b", "c", "e"]
    assert top_k(scores, labels, 0) == []


def test_softmax_is_stable():
    s = softmax(np.array([1000.0, 1000.0, -1000.0]))
    assert s.tolist() == pytest.approx([0.5, 0.5, 0.0])
