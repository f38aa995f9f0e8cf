// Package attach is the server side of uprobes in traced processes (DESIGN.md section 6,
// docs/probes.md): it resolves a probe point in an executable file, decodes and relocates the
// instructions a jump there displaces (x86asm), and keeps the per-user attachments table that
// the agents preloaded into traced processes (cshim/) read to patch their code. A doorbell
// signal tells registered processes that the table changed; Ring waits until they applied it.
package attach
