// throw.cpp — the C++ lines of the shim.
// fmlp_throw: C cannot throw, and torch turns a std::runtime_error escaping a boxed kernel
// into a Python RuntimeError. The C files are compiled with -fexceptions so the exception
// unwinds through their frames.
// fmlp_box_ivalue: an optional argument (Tensor?) present in a dispatcher call is passed as
// a pointer to a heap StableIValue that torch frees with C++ delete, so it must come
// from C++ new.
#include <cstdint>
#include <stdexcept>
extern "C" [[noreturn]] void fmlp_throw(const char* msg) { throw std::runtime_error(msg); }
extern "C" uint64_t* fmlp_box_ivalue(uint64_t v) { return new uint64_t(v); }
