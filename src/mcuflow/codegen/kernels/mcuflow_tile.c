/* TILE int8 kernel (TFLite reference Tile, bit-exact: a copy). */
#include <string.h>

#include "mcuflow_common.h"

/* mcuflow:interface */

/* TILE of a tensor of `rank` dims `dims` (neighbouring untiled dims merged): `multiples[d]`
 * whole copies along each dim. */
typedef struct {
    int32_t rank;
    int32_t dims[MCUFLOW_MAX_RANK];
    int32_t multiples[MCUFLOW_MAX_RANK];
} mcuflow_tile_t;

/* The stored int8 values are copied, no requantisation (input and output share it); the output
 * must not overlap the input. */
void mcuflow_tile_s8(const mcuflow_tile_t *t, const int8_t *input, int8_t *output);

/* mcuflow:end-interface */

/* Tiles the block of dims d.. at `input` into `output`; returns the bytes written. As LiteRT's
 * TileOneDimension: each input slice is tiled first, then the result copied multiples - 1
 * times. */
static size_t tile_dim(const mcuflow_tile_t *t, int32_t d, const int8_t *input, int8_t *output)
{
    size_t stride = 1;
    for (int32_t k = d + 1; k < t->rank; ++k) {
        stride *= (size_t)t->dims[k];
    }
    size_t written = 0;
    if (d == t->rank - 1) {
        written = (size_t)t->dims[d];
        memcpy(output, input, written);
    } else {
        for (int32_t i = 0; i < t->dims[d]; ++i) {
            written += tile_dim(t, d + 1, input + (size_t)i * stride, output + written);
        }
    }
    for (int32_t m = 1; m < t->multiples[d]; ++m) {
        memcpy(output + (size_t)m * written, output, written);
    }
    return written * (size_t)t->multiples[d];
}

void mcuflow_tile_s8(const mcuflow_tile_t *t, const int8_t *input, int8_t *output)
{
    (void)tile_dim(t, 0, input, output);
}
