"""The paper's theory: Prop. 2 (spectral bound), Prop. 3 (crash-mass tail bound delta0),
Prop. 4 (first-order mean and variance of the error), Prop. 5 (Chebyshev certificate), and the
exact single-fault terms ("b4" in the paper's code).

Props. 4 and 5 are first-order approximations: they drop terms of order p^2 and the Hessian
remainder (Assumptions 4-5), so they are estimates, not guarantees. The sound certificate is
:func:`neurosim.certify`.
"""

from neurosim.theory.bounds import (
    assumptions_report,
    crash_derivatives,
    delta0_bound,
    kl_bernoulli,
    lipschitz_chain,
    q_balance,
    single_fault_terms,
    spectral_bound,
    taylor_moments,
    chebyshev_certificate,
    TheoryReport,
    theory_report,
)

__all__ = [
    "assumptions_report",
    "crash_derivatives",
    "delta0_bound",
    "kl_bernoulli",
    "lipschitz_chain",
    "q_balance",
    "single_fault_terms",
    "spectral_bound",
    "taylor_moments",
    "chebyshev_certificate",
    "TheoryReport",
    "theory_report",
]
