"""HBM tensors (kernel inputs and outputs) and on-chip tiles (SBUF / PSUM) with their indexing rules."""
from __future__ import annotations

import weakref

import numpy as np

from nki_kernels.simulator import dtypes, limits
from nki_kernels.simulator.memory import current_allocator

ON_CHIP = ("sbuf", "psum")


def _index_component(component):
    if isinstance(component, Tile):
        if dtypes.is_float(component.dtype):
            raise TypeError("indirect access needs an integer index tile")
        return component.data.astype(np.int64)
    if isinstance(component, np.ndarray):
        if component.dtype.kind not in "iu":
            raise TypeError("index expressions must be integer (built from nl.arange)")
        return component.astype(np.int64)
    if isinstance(component, (int, np.integer)):
        return int(component)
    if isinstance(component, slice) or component is Ellipsis:
        return component
    raise TypeError(f"unsupported index {component!r}")


def _expand_key(key, ndim: int) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    key = tuple(_index_component(c) for c in key)
    if any(c is Ellipsis for c in key):
        at = next(i for i, c in enumerate(key) if c is Ellipsis)
        fill = (slice(None),) * (ndim - len(key) + 1)
        key = key[:at] + fill + key[at + 1:]
    if len(key) > ndim:
        raise IndexError(f"too many indices ({len(key)}) for a {ndim}-d tensor")
    return key + (slice(None),) * (ndim - len(key))


class HbmAccess:
    """An access pattern into an HBM tensor: what nl.load reads and nl.store writes."""

    def __init__(self, tensor: "HbmTensor", key) -> None:
        self.tensor = tensor
        shape = tensor.array.shape
        self.key = _expand_key(key, len(shape))
        self.advanced = any(isinstance(c, np.ndarray) for c in self.key)
        if self.advanced:
            if any(isinstance(c, slice) for c in self.key):
                raise NotImplementedError(
                    "simulator: an access mixing slices with index expressions; "
                    "use nl.arange for every non-integer index"
                )
            arrays = [c for c in self.key if isinstance(c, np.ndarray)]
            self.shape = tuple(np.broadcast_shapes(*[a.shape for a in arrays]))
        else:
            for axis, (c, size) in enumerate(zip(self.key, shape)):
                if isinstance(c, slice):
                    bounds = [int(v) for v in (c.start, c.stop) if v is not None]
                    if any(not 0 <= v <= size for v in bounds):
                        raise IndexError(f"slice {c.start}:{c.stop} out of bounds for HBM axis {axis} of size {size}")
                elif not 0 <= c < size:
                    raise IndexError(f"index {c} out of bounds for HBM axis {axis} of size {size}")
            self.shape = _basic_shape(shape, self.key)

    @property
    def dtype(self) -> np.dtype:
        return self.tensor.dtype

    def _gather_index(self, mask: np.ndarray | None) -> tuple:
        full = []
        for axis, c in enumerate(self.key):
            if isinstance(c, np.ndarray):
                c = np.broadcast_to(c, self.shape)
                if mask is not None:
                    c = np.where(mask, c, 0)
                size = self.tensor.array.shape[axis]
                bad = (c < 0) | (c >= size)
                if bad.any():
                    raise IndexError(
                        f"index {int(c[bad].flat[0])} out of bounds for HBM axis {axis} of size {size} "
                        "(indirect access)"
                    )
            full.append(c)
        return tuple(full)

    def read(self, mask: np.ndarray | None) -> np.ndarray:
        if self.advanced:
            return self.tensor.array[self._gather_index(mask)]
        return np.array(self.tensor.array[self.key])

    def write(self, value: np.ndarray, mask: np.ndarray | None) -> None:
        value = value.astype(self.tensor.dtype)
        if self.advanced:
            index = self._gather_index(mask)
            if mask is None:
                self.tensor.array[index] = value
            else:
                self.tensor.array[tuple(c[mask] if isinstance(c, np.ndarray) else c for c in index)] = value[mask]
            return
        view = self.tensor.array[self.key]
        if mask is None:
            view[...] = value
        else:
            view[...] = np.where(mask, value, view)


def _basic_shape(shape: tuple[int, ...], key: tuple) -> tuple[int, ...]:
    out = []
    for c, size in zip(key, shape):
        if isinstance(c, slice):
            out.append(len(range(*c.indices(size))))
    return tuple(out)


class HbmTensor:
    """A tensor in device memory: kernel arguments and nl.ndarray(..., buffer=nl.shared_hbm)."""

    buffer = "shared_hbm"

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def ndim(self) -> int:
        return self.array.ndim

    def reshape(self, shape) -> "HbmTensor":
        view = self.array.reshape(tuple(shape))
        if not np.may_share_memory(view, self.array):
            raise ValueError("HBM reshape must be a view of the same memory")
        return HbmTensor(view)

    def __getitem__(self, key) -> HbmAccess:
        return HbmAccess(self, key)


class Tile:
    """An on-chip tile: axis 0 is the partition axis. Live (counted against SBUF/PSUM) while referenced."""

    __slots__ = ("data", "buffer", "valid", "_base", "__weakref__")

    def __init__(
        self, data: np.ndarray, buffer: str = "sbuf", *, base: "Tile | None" = None, what: str = "tile"
    ) -> None:
        if buffer not in ON_CHIP:
            raise ValueError(f"{what}: on-chip tiles live in nl.sbuf or nl.psum, not {buffer}")
        self.data = data
        self.buffer = buffer
        self.valid: np.ndarray | None = None
        self._base = base
        if base is None:
            limits.check_partitions(data.shape, what)
            dtypes.check(data.dtype, what)
            per_partition = int(np.prod(data.shape[1:])) * data.dtype.itemsize
            allocator = current_allocator()
            describe = f"{what} [{', '.join(map(str, data.shape))}] {data.dtype}"
            amount = allocator.allocate(buffer, per_partition, describe)
            weakref.finalize(self, allocator.release, buffer, amount)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def __getitem__(self, key) -> "Tile":
        key = tuple(_index_component(c) for c in (key if isinstance(key, tuple) else (key,)))
        view = self.data[key]
        if view.ndim < 2:
            key = tuple(slice(c, c + 1) if isinstance(c, int) else c for c in key)
            view = self.data[key]
        if not np.may_share_memory(view, self.data):  # an index-array gather copies: a new tile of its own
            return Tile(np.ascontiguousarray(view), self.buffer, what="tile gather")
        return Tile(view, self.buffer, base=self._base or self)

    def __setitem__(self, key, value) -> None:
        key = tuple(_index_component(c) for c in (key if isinstance(key, tuple) else (key,)))
        target = self.data[key]
        if isinstance(value, Tile):
            if value.shape != target.shape:
                raise ValueError(
                    f"tile assignment: value shape {list(value.shape)} != target shape {list(target.shape)}"
                )
            incoming = value.data.astype(self.dtype)
            if value.valid is not None:
                incoming = np.where(np.broadcast_to(value.valid, target.shape), incoming, target)
        else:
            incoming = np.full(target.shape, value, dtype=self.dtype)
        self.data[key] = incoming

    def broadcast_to(self, shape) -> "Tile":
        shape = tuple(shape)
        if self.shape[0] not in (1, shape[0]):
            raise ValueError(f"broadcast_to: cannot broadcast partition dimension {self.shape[0]} to {shape[0]}")
        return Tile(np.ascontiguousarray(np.broadcast_to(self.data, shape)), "sbuf", what="broadcast_to")

    def reshape(self, shape) -> "Tile":
        shape = tuple(shape)
        if shape[0] != self.shape[0]:
            raise ValueError("tile reshape must keep the partition dimension")
        return Tile(self.data.reshape(shape), self.buffer, base=self._base or self)

    def _inplace(self, other, op) -> "Tile":
        result = op(self, other)
        self.data[...] = result.data.astype(self.dtype)
        return self

    def __iadd__(self, other):
        from nki_kernels.simulator.language import add

        return self._inplace(other, add)

    def __imul__(self, other):
        from nki_kernels.simulator.language import multiply

        return self._inplace(other, multiply)

    def __add__(self, other):
        from nki_kernels.simulator.language import add

        return add(self, other)

    __radd__ = __add__

    def __sub__(self, other):
        from nki_kernels.simulator.language import subtract

        return subtract(self, other)

    def __rsub__(self, other):
        from nki_kernels.simulator.language import subtract

        return subtract(other, self)

    def __mul__(self, other):
        from nki_kernels.simulator.language import multiply

        return multiply(self, other)

    __rmul__ = __mul__

    def __truediv__(self, other):
        from nki_kernels.simulator.language import divide

        return divide(self, other)

    def __neg__(self):
        from nki_kernels.simulator.language import negative

        return negative(self)
