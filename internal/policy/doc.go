// Package policy is QSP's policy-as-code stage: it decides, under OPA/Rego
// policies, whether a gate lets a deploy through and whether a playbook may
// act. It sits between the engine (which supplies SLO states, budgets,
// burn rates and alerts) and the gate and playbook packages (which build an
// Input, call Evaluate and act on the Decision); the store records every
// decision with its input through the Recorder port, and the API serves
// that decision log.
//
// # Policies
//
// Three built-in policies ship with QSP (package qsp.builtin.*, embedded
// from builtin/*.rego):
//
//   - error-budget (gates): a spent error budget (a budget policy step
//     with action freeze, or, without steps, no budget left), a budget
//     below the gate's minRemaining or a 1h burn rate above its
//     maxBurnRate deny features and config changes; fixes, rollbacks and
//     mitigations pass with a warning. Warn steps warn; SLOs without data
//     warn that their budget cannot be checked.
//   - trade-off (gates and playbooks): a change or action for one
//     category that costs a higher-ranked category is denied; one that
//     costs anything while a higher-ranked category's page is firing for
//     the service is denied; a cost to a lower-ranked category passes with
//     a warning naming the SLOs whose budget will burn. Priorities default
//     to quality > security > performance (Options.Priorities).
//   - vulnerabilities (gates): counts above the gate's maxFindings per
//     severity and findings of the age severity or worse older than maxAge
//     deny; findings without a fix warn. Messages list the worst IDs.
//
// User policies are Policy objects of the spec (inline rego or a .rego
// path). The contract, like conftest's:
//
//   - A module is Rego v1 (`deny contains msg if { ... }`) in its own
//     package, outside data.qsp (reserved for QSP); two policies may not
//     share a package.
//   - It may define deny, warn and info, each a set of strings or of
//     objects with a string msg field. A boolean `deny if ...` counts as
//     one reason, "deny is true"; any other shape is an error
//     (ErrResultType), never a silent pass.
//   - It reads the decision request as input (see Input: point, gate or
//     playbook, service, change, checks, action, trigger, slos, alerts,
//     now) and its spec.data as data.qsp.params. It may import the
//     built-in packages, e.g. data.qsp.builtin.error_budget.blockers.
//   - Modules are type-checked against InputSchema, derived from Input:
//     a reference to a field the input lacks (input.chnage) fails to
//     compile instead of silently never matching.
//   - A policy applies where its appliesTo says (default: gate and
//     playbook) and wherever a gate or playbook names it (Input.Policies).
//   - http.send, net.* and opa.runtime are not available: a module that
//     calls them does not compile. time.now_ns is the decision time.
//     print() goes to the debug log. One decision is bounded by
//     Options.Timeout (default 1s); exceeding it is an error.
//
// # Decisions
//
// A decision is deny when any policy denies, warn when only warnings
// remain, allow otherwise; each consulted policy contributes reasons (an
// info reason when it passed). An error from Evaluate means there is no
// decision: a caller must never treat it as allow (a gate exits 2).
//
// Modules are parsed and compiled, and each policy's query prepared, once
// in New; Evaluate does no parsing. Engines are immutable: reload by
// building a new one and swapping it atomically.
package policy
