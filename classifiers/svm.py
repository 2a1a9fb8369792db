"""Linear SVM (one-vs-rest, L2-regularised squared hinge, as LinearSVC) solved for all classes at once.

The squared hinge is piecewise quadratic, so a generalised Newton method converges in a few steps.
Each step solves H s = -g by conjugate gradients where H v = v + 2C X^T (D * (X v)), D marking the
margin violators: for all K classes that is two (n x d) @ (d x K) matrix products, which BLAS runs
at full speed, instead of K separate coordinate-descent passes.
"""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedKFold
from tqdm import tqdm


def squared_hinge_ovr(X, Y, C, W=None, tol=1e-3, max_iter=50, cg_iter=50):
    """argmin_W sum_k 0.5 |w_k|^2 + C sum_i max(0, 1 - Y_ik x_i.w_k)^2 for X (n x d), Y in {-1, 1}^(n x K)."""
    W = np.zeros((X.shape[1], Y.shape[1]), np.float32) if W is None else W.copy()
    g0 = np.linalg.norm(2 * C * (X.T @ Y), axis=0)  # gradient norm at W = 0, per class
    for _ in range(max_iter):
        Z = X @ W
        M = np.maximum(0, 1 - Y * Z)
        G = W - 2 * C * (X.T @ (Y * M))
        todo = np.flatnonzero(np.linalg.norm(G, axis=0) > tol * g0)
        if len(todo) == 0:
            break
        D = (M[:, todo] > 0).astype(np.float32)
        S = conjugate_gradients(lambda V: V + 2 * C * (X.T @ (D * (X @ V))), -G[:, todo], cg_iter)
        W[:, todo] += line_search(W[:, todo], S, G[:, todo], Z[:, todo], X @ S, Y[:, todo], C) * S
    return W


def conjugate_gradients(hvp, B, max_iter, rtol=0.1):
    """Solves H x = b for every column of B at once (inexact: relative residual rtol, as TRON does)."""
    Xs = np.zeros_like(B)
    R, P = B.copy(), B.copy()
    rs = (R * R).sum(0)
    stop = rtol ** 2 * rs
    for _ in range(max_iter):
        HP = hvp(P)
        alpha = rs / np.maximum((P * HP).sum(0), 1e-30)
        Xs += alpha * P
        R -= alpha * HP
        rs_new = (R * R).sum(0)
        if (rs_new <= stop).all():
            break
        P = R + (rs_new / np.maximum(rs, 1e-30)) * P
        rs = rs_new
    return Xs


def line_search(W, S, G, Z, XS, Y, C, shrink=0.5, tries=20):
    """Per-class backtracking (Armijo) step sizes; the objective along S costs no matrix product."""
    def objective(step):
        return 0.5 * ((W + step * S) ** 2).sum(0) + C * (np.maximum(0, 1 - Y * (Z + step * XS)) ** 2).sum(0)

    f0, slope = objective(np.zeros(W.shape[1], np.float32)), (G * S).sum(0)
    step = np.ones(W.shape[1], np.float32)
    for _ in range(tries):
        ok = objective(step) <= f0 + 1e-2 * step * slope
        if ok.all():
            break
        step = np.where(ok, step, step * shrink)
    return step


def as_vectors(X) -> np.ndarray:
    """float32 rows; spatial maps (n, h, w, c) are averaged to their pooled vectors (n, c)."""
    X = np.asarray(X, dtype=np.float32)
    return X.mean(axis=tuple(range(1, X.ndim - 1))) if X.ndim > 2 else X


class LinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM, squared hinge, L2; C by stratified cross-validation over `Cs` unless given."""

    def __init__(self, C=None, Cs=(0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0), cv=3, tol=1e-3, max_iter=50, standardize=True,
                 random_state=0, verbose=0):
        self.C, self.Cs, self.cv, self.tol, self.max_iter = C, Cs, cv, tol, max_iter
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

    def _design(self, X):
        X = (as_vectors(X) - self.mean_) / self.scale_
        return np.hstack([X, np.ones((len(X), 1), np.float32)])  # bias column, regularised as LinearSVC's

    def _targets(self, y):
        return np.where(y[:, None] == self.classes_[None, :], 1.0, -1.0).astype(np.float32)

    def fit(self, X, y):
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        X2 = as_vectors(X)
        self.mean_, self.scale_ = ((X2.mean(0), X2.std(0) + 1e-6) if self.standardize else (0.0, 1.0))
        A, Y = self._design(X2), self._targets(y)
        fits = 1 + (self.cv * len(self.Cs) if self.C is None else 0)
        with tqdm(total=fits, desc="svm", unit="fit", disable=not self.verbose) as bar:
            if self.C is None:
                self.cv_scores_ = self._cross_validate(A, Y, y, bar)
                self.C_ = max(self.Cs, key=lambda C: (self.cv_scores_[C], -C))
            else:
                self.C_ = self.C
            W = squared_hinge_ovr(A, Y, self.C_, tol=self.tol, max_iter=self.max_iter)
            bar.update()
        self.coef_, self.intercept_ = W[:-1].T, W[-1]
        return self

    def _cross_validate(self, A, Y, y, bar):
        scores = {C: [] for C in self.Cs}
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(A, y):
            W = None
            for C in sorted(self.Cs):  # warm start along the regularisation path
                W = squared_hinge_ovr(A[train], Y[train], C, W, tol=self.tol, max_iter=self.max_iter)
                scores[C].append(float((self.classes_[(A[test] @ W).argmax(1)] == y[test]).mean()))
                bar.update()
        return {C: float(np.mean(s)) for C, s in scores.items()}

    def decision_function(self, X):
        return self._design(X)[:, :-1] @ self.coef_.T + self.intercept_

    def predict(self, X):
        return self.classes_[self.decision_function(X).argmax(axis=1)]
