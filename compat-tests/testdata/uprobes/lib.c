/* The library the uprobe workload loads with dlopen (work dlopen LIB). */
__attribute__((noinline)) long libfn(long x)
{
	return x * 3;
}
