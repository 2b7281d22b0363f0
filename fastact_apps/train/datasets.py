"""The tutorial models' data, generated with a seed (nothing is downloaded)."""
from typing import Tuple

import torch


Data = Tuple[torch.Tensor, torch.Tensor]

def circles(n: int = 1000, seed: int = 0) -> Data:
    """Seed 002: points uniform in [-1.5, 1.5]^2, class 1 inside the unit circle."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen) * 3 - 1.5
    return x, (x.pow(2).sum(1) < 1).long()

def spiral(points: int = 100, classes: int = 3, seed: int = 0) -> Data:
    """The nnfs book's spiral: `classes` arms of `points` points each."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for k in range(classes):
        r = torch.linspace(0.0, 1.0, points)
        t = torch.linspace(k * 4.0, (k + 1) * 4.0, points) + torch.randn(points, generator=gen) * 0.2
        xs.append(torch.stack([r * torch.sin(t * 2.5), r * torch.cos(t * 2.5)], 1))
        ys.append(torch.full((points,), k, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)

def two_class_clusters(n: int = 1000, class_sep: float = 0.9, flip_y: float = 0.1, seed: int = 0) -> Data:
    """Seed 004's make_classification(n_features=2, n_informative=2,
    n_redundant=0, flip_y=0.1, class_sep=0.9) in its essentials: two
    Gaussian clusters per class on the corners of a square of side
    2 class_sep, a random linear mix, and a fraction flip_y of labels redrawn."""
    gen = torch.Generator().manual_seed(seed)
    # class 0 on the corners with a negative first coordinate: separable, as the notebook's draw was
    corners = torch.tensor([[-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [1.0, 1.0]]) * class_sep
    cluster = torch.randint(0, 4, (n,), generator=gen)
    y = cluster // 2
    x = corners[cluster] + torch.randn(n, 2, generator=gen)
    x = x @ (torch.rand(2, 2, generator=gen) * 2 - 1 + torch.eye(2))
    flip = torch.rand(n, generator=gen) < flip_y
    y = torch.where(flip, torch.randint(0, 2, (n,), generator=gen), y)
    return x, y

def blobs(n: int, features: int, classes: int, seed: int = 0) -> Data:
    """Gaussian clusters, one per class, in `features` dimensions."""
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, features, generator=gen) * 2
    y = torch.randint(0, classes, (n,), generator=gen)
    return centers[y] + torch.randn(n, features, generator=gen), y

def regression(n: int, features: int, seed: int = 0) -> Data:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=gen)
    w = torch.randn(features, 1, generator=gen)
    return x, x @ w + 0.1 * torch.randn(n, 1, generator=gen)
