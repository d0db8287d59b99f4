/* Fault points for tests (fault.h). */
#include "fault.h"

_Atomic int kn__fault_armed[KN__FP__COUNT];

void kn__fault_arm(kn__fault_point_t p, int n)
{
    if ((int)p >= 0 && p < KN__FP__COUNT)
        atomic_store(&kn__fault_armed[p], n > 0 ? n : 0);
}

int kn__fault_left(kn__fault_point_t p)
{
    if ((int)p < 0 || p >= KN__FP__COUNT)
        return 0;
    int v = atomic_load(&kn__fault_armed[p]);
    return v > 0 ? v : 0;
}
