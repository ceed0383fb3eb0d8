/* DEPTHWISE_CONV_2D of few input channels as a dense CONV_2D on the Arm DSP extension.
 *
 * The generator widens the depthwise weights into CONV_2D weights (output channel o keeps its
 * taps in input channel o / multiplier, zeros in the others) and packs them as the DSP CONV_2D
 * kernel reads them; the layer is then that kernel's 2x2 blocked matrix product, bit-exact
 * since the zero weights add nothing to the accumulators. */
#include "mcuflow_dsp.h"

void mcuflow_dwconv_dense_dsp_s8(const mcuflow_window_t *g, const mcuflow_dsp_matrix_t *m,
                                 const mcuflow_dsp_requant_t *q, const int8_t *input,
                                 int8_t *output, mcuflow_word_t *columns)
{
    mcuflow_conv2d_dsp_s8(g, m, q, input, output, columns);
}
