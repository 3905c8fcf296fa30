import numpy as np
import pytest

from yilightning.data import Document, organize
from yilightning.data.clustering import embed, kmeans

COOKING = ["Bake the bread dough in a hot oven until the crust is brown and the loaf sounds hollow.",
           "Knead the dough, let the yeast rise, then bake the bread loaf in the oven.",
           "A sourdough loaf needs flour, water, salt and a starter; bake it in a hot oven."]
NETWORK = ["Open a TCP socket, connect to the server port and send the request bytes over the network.",
           "The server accepts a socket connection on its port and reads the bytes the client sends.",
           "Network sockets carry bytes between a client and a server through a port."]


def test_similar_documents_end_up_next_to_each_other():
    docs = [Document(t, f"{i}") for i, t in enumerate(x for pair in zip(COOKING, NETWORK) for x in pair)]
    out = organize(docs, clusters=2)
    topics = ["cook" if d.text in COOKING else "net" for d in out.docs]
    assert topics in (["cook"] * 3 + ["net"] * 3, ["net"] * 3 + ["cook"] * 3)
    assert sorted(d.source for d in out.docs) == sorted(d.source for d in docs)  # a permutation: nothing lost
    assert out.clusters == 2 and "2 clusters" in out.summary()


def test_embed_and_kmeans():
    x = embed(["a b c", "", "a b c"])
    assert np.allclose(np.linalg.norm(x[[0, 2]], axis=1), 1) and not x[1].any()
    assert kmeans(x[[0, 2]], 1).tolist() == [0, 0]
    with pytest.raises(ValueError, match="k must lie in"):
        kmeans(x, 5)
    assert organize([]).docs == []
