/* Codebook weight decoding: canonical Huffman codes through a lookup table, then centroids. */
#include "mcuflow_common.h"

/* mcuflow:interface */

/* Weights stored as int8 centroids addressed by canonical Huffman codes (k-means + Huffman),
 * decoded into RAM right before the layer that reads them (mcuflow.quant.codebook). */
typedef struct {
    const uint8_t *stream;     /* the code of every element, first bit in bit 7 of byte 0 */
    int32_t stream_bytes;
    int32_t size;              /* elements to decode */
    int32_t lookup_bits;       /* the lookup table has 2^lookup_bits entries */
    const int16_t *lookup;     /* prefix -> (length << 8) | (value + 128); 0: a longer code */
    int32_t max_bits;          /* the longest code */
    const int32_t *long_codes; /* lengths lookup_bits+1..max_bits: (limit, base); or NULL */
    const int8_t *values;      /* centroids in canonical code order (long codes), or NULL */
} mcuflow_codebook_t;

void mcuflow_codebook_decode_s8(const mcuflow_codebook_t *cb, int8_t *output);

/* mcuflow:end-interface */

/* A code longer than lookup_bits at the top of `bits`: its value, its length in `length`. */
static int32_t mcuflow_codebook_long(const mcuflow_codebook_t *cb, uint32_t bits,
                                     int32_t *length)
{
    for (int32_t n = cb->lookup_bits + 1; n <= cb->max_bits; ++n) {
        const int32_t *pair = cb->long_codes + 2 * (n - cb->lookup_bits - 1);
        const int32_t code = (int32_t)(bits >> (32 - n));
        if (code < pair[0]) {
            *length = n;
            return cb->values[code - pair[1]];
        }
    }
    *length = cb->max_bits; /* not a code: only a corrupted stream gets here */
    return 0;
}

void mcuflow_codebook_decode_s8(const mcuflow_codebook_t *cb, int8_t *output)
{
    /* Locals: stores through `output` (a char type) could alias *cb for the compiler. */
    const uint8_t *stream = cb->stream;
    const uint8_t *const stream_end = cb->stream + cb->stream_bytes;
    const int16_t *const lookup = cb->lookup;
    const int32_t drop = 32 - cb->lookup_bits;
    const int32_t size = cb->size;
    uint32_t bits = 0; /* unread bits of the stream, the next one in bit 31 */
    int32_t held = 0;  /* how many bits of `bits` are stream bits */
    for (int32_t i = 0; i < size; ++i) {
        while (held <= 24) {
            const uint32_t byte = stream < stream_end ? *stream++ : 0u;
            bits |= byte << (24 - held);
            held += 8;
        }
        const int32_t entry = lookup[bits >> drop];
        int32_t length = entry >> 8;
        int32_t value = (entry & 0xFF) - 128;
        if (length == 0) {
            value = mcuflow_codebook_long(cb, bits, &length);
        }
        output[i] = (int8_t)value;
        bits <<= length;
        held -= length;
    }
}
