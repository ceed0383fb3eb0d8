/* TRANSPOSE_CONV int8 kernel for cores with the DSP extension (LiteRT bit-exact): one DSP
 * CONV_2D per output phase (see mcuflow_dsp_tconv_phase_t). */
#include "mcuflow_dsp.h"

void mcuflow_transpose_conv_phases_dsp_s8(const mcuflow_dsp_tconv_phase_t *phase,
                                          const int8_t *input, int8_t *output,
                                          mcuflow_word_t *columns)
{
    for (; phase != NULL; phase = phase->next) {
        mcuflow_conv2d_dsp_s8(&phase->g, &phase->m, &phase->q, input, output + phase->out_offset,
                              columns);
    }
}
