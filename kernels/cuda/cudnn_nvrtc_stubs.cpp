// Link-time stand-ins for NVRTC, needed only by the cuDNN frontend's experimental Blackwell
// (sm100) RMSNorm+SiLU engine, which compiles kernels at run time. graft builds only SDPA graphs
// and never that engine, and the GPU machines have no system libnvrtc; these weak definitions
// satisfy the linker without adding a run-time dependency (a real libnvrtc linked in wins).
// Each reports failure, so the engine would fail loudly if anything ever reached it.
#ifdef GRAFT_HAVE_CUDNN_FE
#include <nvrtc.h>

extern "C" {
__attribute__((weak)) nvrtcResult nvrtcCreateProgram(nvrtcProgram*, const char*, const char*, int,
                                                     const char* const*, const char* const*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcCompileProgram(nvrtcProgram, int, const char* const*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcDestroyProgram(nvrtcProgram*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcGetCUBINSize(nvrtcProgram, size_t*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcGetCUBIN(nvrtcProgram, char*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcGetProgramLogSize(nvrtcProgram, size_t*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
__attribute__((weak)) nvrtcResult nvrtcGetProgramLog(nvrtcProgram, char*) {
  return NVRTC_ERROR_INTERNAL_ERROR;
}
}
#endif
