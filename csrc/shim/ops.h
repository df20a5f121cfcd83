/* ops.h — boxed kernels registered by module.c (implemented in ops.c). */
#ifndef FMLP_SHIM_OPS_H
#define FMLP_SHIM_OPS_H
#include "stable_abi.h"
void fmlp_boxed_forward(StableIValue* stack, uint64_t nargs, uint64_t nouts);
void fmlp_boxed_backward(StableIValue* stack, uint64_t nargs, uint64_t nouts);
void fmlp_boxed_infer(StableIValue* stack, uint64_t nargs, uint64_t nouts);
#ifdef FMLP_WITH_CUDA
/* FUSED_MLP_STRATEGY as an fmlp_strategy (FMLP_STRATEGY_AUTO when unset), -1 when invalid. */
int fmlp_shim_forced_strategy(void);
#endif
#endif
