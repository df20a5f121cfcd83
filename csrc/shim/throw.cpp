// throw.cpp — the one C++ line of the shim: C cannot throw, and torch turns a
// std::runtime_error escaping a boxed kernel into a Python RuntimeError. The C files
// are compiled with -fexceptions so the exception unwinds through their frames.
#include <stdexcept>
extern "C" [[noreturn]] void fmlp_throw(const char* msg) { throw std::runtime_error(msg); }
