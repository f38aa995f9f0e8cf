/* A library the workload loads with dlopen (TestDlopen). */
volatile long lib_sink;

__attribute__((noinline)) long lib_probed(long a, long b)
{
	lib_sink += a;
	return a * b + lib_sink;
}
