/* TRANSPOSE_CONV int8 kernel for cores with the DSP extension (LiteRT bit-exact): one DSP
 * CONV_2D per output phase (see mcuflow_dsp_tconv_t). */
#include "mcuflow_dsp.h"

void mcuflow_transpose_conv_phases_dsp_s8(const mcuflow_dsp_tconv_t *t, const int8_t *input,
                                          int8_t *output, mcuflow_word_t *columns)
{
    for (int32_t p = 0; p < t->phases; ++p) {
        mcuflow_conv2d_dsp_s8(&t->windows[p], &t->matrices[p], &t->requants[p], input,
                              output + t->offsets[p], columns);
    }
}
