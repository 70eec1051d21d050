/* The word type of the netlist evaluator (lgn_fpga.netlist.cbackend): LANES x 64 images, a GCC/Clang vector
 * type when LANES > 1, so that one statement of the generated code is one SIMD operation.  The generated
 * files define LANES and then include this text. */
#ifndef LANES
#error "define LANES (1, 2, 4 or 8) first"
#endif
#include <stdint.h>
#if LANES == 1
typedef uint64_t w_t;
static const w_t ZERO = 0;
#else
typedef uint64_t w_t __attribute__((vector_size(8 * LANES)));
static const w_t ZERO = {0};
#endif
#define ONES (~ZERO)
#define PART __attribute__((noinline, visibility("hidden")))
