"""Codebook weights (Han et al.'s Deep Compression): k-means centroids, canonical Huffman codes.

After affine int8 quantisation, the int8 weights of each CONV_2D, DEPTHWISE_CONV_2D and
FULLY_CONNECTED layer are clustered by scikit-learn's k-means into at most `size` centroids,
themselves int8 values, so the decoded tensor is an ordinary per-channel int8 weight tensor
with the affine scales: the graph stays a TFLite int8 model that LiteRT runs bit-exactly, and
the exported .tflite holds the decoded weights. The clustering runs over the int8 codes (each
channel's weights relative to its own scale), all channels of the layer sharing one codebook.
The centroid index of every weight is then Huffman-coded (canonical code, at most
MAX_CODE_BITS bits); `Tensor.codebook` records that stored form and the generated C decodes it
into RAM right before the layer runs, through the tables of `decoder_tables`. A layer whose
stored form would not be smaller than its int8 weights keeps the plain affine weights.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from mcuflow.errors import McuflowError
from mcuflow.ir.codebook import Codebook, canonical_codes
from mcuflow.ir.constraints import WEIGHT_AXIS
from mcuflow.ir.graph import DType, Graph
from mcuflow.quant.affine import WEIGHT_MAX, quantize_affine
from mcuflow.quant.calibrate import Range

DEFAULT_SIZE = 16
MAX_SIZE = 256
MAX_CODE_BITS = 16
LOOKUP_BITS = 8
"""Codes of at most this many bits decode with one table look-up; longer ones walk lengths."""
LOOKUP_SHARE = 8
"""The look-up table (2 bytes an entry) takes at most 1/LOOKUP_SHARE of the decoded bytes."""
KMEANS_INITS = 3
SEED = 0


@dataclass(frozen=True)
class Clusters:
    """Centroids (sorted int8 values) and the centroid index of every element."""

    centroids: np.ndarray
    indices: np.ndarray


def cluster(codes: np.ndarray, size: int) -> Clusters:
    """At most `size` int8 centroids for int8 `codes` (k-means over the value histogram).

    When the codes take at most `size` distinct values, those values are the centroids and
    nothing is lost. Otherwise k-means centres are rounded to integers and every value joins
    its nearest centroid (the lower one on a tie); centroids left without a value are dropped.
    """
    values, inverse, counts = np.unique(codes.reshape(-1), return_inverse=True,
                                        return_counts=True)
    if len(values) <= size:
        return Clusters(values.astype(np.int8), inverse.astype(np.int64))
    from sklearn.cluster import KMeans  # here: scikit-learn takes a second to import

    kmeans = KMeans(n_clusters=size, n_init=KMEANS_INITS, random_state=SEED)
    kmeans.fit(values.reshape(-1, 1).astype(np.float64), sample_weight=counts)
    centres = np.unique(np.clip(np.rint(kmeans.cluster_centers_.reshape(-1)), -WEIGHT_MAX,
                                WEIGHT_MAX)).astype(np.int64)
    nearest = np.abs(values.astype(np.int64)[:, None] - centres[None, :]).argmin(axis=1)
    used, remapped = np.unique(nearest, return_inverse=True)
    return Clusters(centres[used].astype(np.int8), remapped[inverse].astype(np.int64))


def huffman_lengths(counts: np.ndarray, limit: int = MAX_CODE_BITS) -> np.ndarray:
    """Huffman code lengths for symbol `counts` (all positive), none longer than `limit`.

    When the optimal code is too deep, the counts are halved (rounding up) until it is not.
    """
    weights = np.asarray(counts, np.int64)
    while True:
        lengths = _huffman(weights)
        if lengths.max() <= limit:
            return lengths
        weights = (weights + 1) // 2


def _huffman(weights: np.ndarray) -> np.ndarray:
    """Optimal prefix-code lengths (a single symbol gets length 1)."""
    lengths = np.zeros(len(weights), np.int64)
    if len(weights) == 1:
        return lengths + 1
    heap = [(int(w), symbol, [symbol]) for symbol, w in enumerate(weights)]
    heapq.heapify(heap)
    while len(heap) > 1:
        w1, order, first = heapq.heappop(heap)
        w2, _, second = heapq.heappop(heap)
        lengths[first + second] += 1
        heapq.heappush(heap, (w1 + w2, order, first + second))
    return lengths


def encode(codes: np.ndarray, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, Codebook]:
    """The clustered int8 tensor (shape of `codes`) and its codebook form."""
    clusters = cluster(codes, size)
    counts = np.bincount(clusters.indices, minlength=len(clusters.centroids))
    lengths = huffman_lengths(counts)
    order = np.lexsort((clusters.centroids, lengths))
    position = np.empty(len(order), np.int64)
    position[order] = np.arange(len(order))
    symbols = position[clusters.indices]
    sorted_lengths = lengths[order]
    stream, bit_length = _pack(canonical_codes(sorted_lengths)[symbols], sorted_lengths[symbols])
    decoded = clusters.centroids[clusters.indices].reshape(codes.shape)
    codebook = Codebook(clusters.centroids[order], sorted_lengths.astype(np.uint8), stream,
                        bit_length, lookup_bits(int(sorted_lengths[-1]), codes.size))
    return decoded, codebook


def lookup_bits(max_bits: int, count: int) -> int:
    """Prefix bits of the decoder's look-up table for `count` codes of at most `max_bits`."""
    share = count // (2 * LOOKUP_SHARE)
    return max(1, min(max_bits, LOOKUP_BITS, share.bit_length() - 1))


def _pack(codes: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, int]:
    """The codes written one after another, most significant bit first, as bytes."""
    positions = np.arange(int(lengths.max()))
    valid = positions[None, :] < lengths[:, None]
    shifts = np.where(valid, lengths[:, None] - 1 - positions[None, :], 0)
    bits = ((codes[:, None] >> shifts) & 1)[valid].astype(np.uint8)
    return np.packbits(bits), int(bits.size)


@dataclass(frozen=True)
class DecoderTables:
    """The tables the C decoder (kernels/mcuflow_codebook.c) reads beside the stream.

    `lookup[p]` for each prefix p of `Codebook.lookup_bits` bits: (length << 8) | (value + 128)
    of the code that starts p, or 0 when that code is longer. `long_codes` holds, for each
    length n from lookup_bits + 1 to the longest, the pair (limit, base): an n-bit prefix c
    below limit is a code, of value values[c - base]; empty when every code fits the look-up.
    """

    lookup: np.ndarray
    long_codes: np.ndarray

    @property
    def values_needed(self) -> bool:
        """True when some code is longer than the look-up, whose values the decoder reads."""
        return bool(self.long_codes.size)


def decoder_tables(codebook: Codebook) -> DecoderTables:
    """The decoder tables of a codebook."""
    lengths = codebook.lengths.astype(np.int64)
    bits = codebook.lookup_bits
    lookup = np.zeros(1 << bits, np.int16)
    for value, length, code in zip(codebook.values.astype(np.int64), lengths, codebook.codes(),
                                   strict=True):
        if length <= bits:
            span = bits - length
            lookup[code << span:(code + 1) << span] = (length << 8) | (value + 128)
    pairs = []
    first = start = 0
    for length in range(1, codebook.max_bits + 1):
        count = int(np.sum(lengths == length))
        if length > bits:
            pairs.append((first + count, first - start))
        first, start = (first + count) << 1, start + count
    return DecoderTables(lookup, np.array(pairs, np.int32).reshape(-1))


def stored_bytes(codebook: Codebook) -> int:
    """Bytes the generated C stores for a codebook: stream, decoder tables, centroids if read."""
    tables = decoder_tables(codebook)
    values = codebook.values.nbytes if tables.values_needed else 0
    return codebook.stream.nbytes + tables.lookup.nbytes + tables.long_codes.nbytes + values


def decode(codebook: Codebook, count: int) -> np.ndarray:
    """The first `count` values of the stream, read as the C decoder reads them (for tests)."""
    tables = decoder_tables(codebook)
    stream = codebook.stream.tolist()
    out = np.zeros(count, np.int8)
    buffer = held = position = 0
    for index in range(count):
        while held <= 24:
            buffer |= (stream[position] if position < len(stream) else 0) << (24 - held)
            position, held = position + 1, held + 8
        entry = int(tables.lookup[buffer >> (32 - codebook.lookup_bits)])
        length, value = entry >> 8, (entry & 0xFF) - 128
        if length == 0:
            length, value = _long_code(codebook, tables, buffer)
        out[index] = value
        buffer, held = (buffer << length) & 0xFFFFFFFF, held - length
    return out


def _long_code(codebook: Codebook, tables: DecoderTables, buffer: int) -> tuple[int, int]:
    for length in range(codebook.lookup_bits + 1, codebook.max_bits + 1):
        limit, base = tables.long_codes[2 * (length - codebook.lookup_bits - 1):][:2].tolist()
        code = buffer >> (32 - length)
        if code < limit:
            return length, int(codebook.values[code - base])
    raise ValueError("invalid codebook stream")


def compress_graph(graph: Graph, size: int = DEFAULT_SIZE) -> Graph:
    """A copy of int8 `graph` whose conv and FC weights are codebook-compressed where it pays.

    `size` (2 to 256) bounds the centroids per layer; 256 keeps every int8 value (Huffman
    coding alone, lossless).
    """
    if not 2 <= size <= MAX_SIZE:
        raise McuflowError(f"codebook size {size} is out of range",
                           f"use 2 to {MAX_SIZE} centroids (16 or 256 are usual)")
    result = graph.copy()
    for op in result.operators:
        if op.kind not in WEIGHT_AXIS:
            continue
        tensor = result.tensors[op.inputs[1]]
        if (tensor.data is None or tensor.dtype is not DType.INT8 or tensor.size == 0
                or tensor.codebook is not None):
            continue
        decoded, codebook = encode(tensor.data, size)
        if stored_bytes(codebook) < tensor.nbytes:
            result.tensors[tensor.name] = replace(tensor, data=decoded, codebook=codebook)
    return result


def stored_weight_bytes(graph: Graph) -> int:
    """Bytes of every constant as stored: codebook form where there is one, else plain."""
    return sum(stored_bytes(t.codebook) if t.codebook is not None else t.nbytes
               for t in graph.tensors.values() if t.is_constant)


def quantize_codebook(graph: Graph, ranges: Mapping[str, Range], per_channel: bool = True,
                      size: int = DEFAULT_SIZE) -> Graph:
    """The affine int8 graph of a float graph, its weights codebook-compressed."""
    return compress_graph(quantize_affine(graph, ranges, per_channel), size)
