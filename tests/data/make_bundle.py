"""Writes tests/data/bundle: the publication bundle of a small surrogate pair (the pair of
tests/test_publish.py), verified by the TensorFlow-free environment. Run from tests/:
python data/make_bundle.py"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import likeflow  # noqa: E402
from test_publish import make_pair  # noqa: E402

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundle")
shutil.rmtree(out, ignore_errors=True)
with tempfile.TemporaryDirectory() as tmp:
    likeflow.publish(make_pair(tmp), out)
print("wrote", out)
