"""Linear SVM (one-vs-rest, L2-regularised squared hinge, as LinearSVC) solved for all classes at once.

The squared hinge is piecewise quadratic, so a generalised Newton method converges in a few steps. The
Newton system is H s = -g with H = I + 2C X^T D X, D marking the margin violators.
- More rows than features: conjugate gradients, for all K classes at once (two (n x d) @ (d x K)
  products per iteration, which BLAS runs at full speed, instead of K coordinate-descent passes),
  preconditioned by I + 2C (share of violators) X^T X through the eigenbasis of X^T X, computed once
  per design matrix: the codes' correlated features make H ill-conditioned, which cost 3x the iterations.
- No more rows than features (small data sets, wide codes): the exact Newton point from the rows' Gram
  matrix (Woodbury: w = X_D^T (I / 2C + X_D X_D^T)^-1 y_D), where truncated conjugate gradients stalled.
Two classes are one problem, as in LinearSVC.

It stops as liblinear's primal Newton solver (LinearSVC with n_samples > n_features) does, per class:
|g| <= tol * max(min(#pos, #neg), 1) / n * |g at w = 0|.
"""
import warnings

import numpy as np
import scipy.linalg
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.metaestimators import available_if

from cnncodes.features.errors import BadParameter
from cnncodes.pipeline.console import progress_bar

from .inputs import as_vectors, fit_standardizer, new_data, standardize, training_data
from .views import view_count, with_all_views


def with_bias(X) -> np.ndarray:
    """X with a column of ones: the bias, regularised as LinearSVC's."""
    return np.hstack([X, np.ones((len(X), 1), np.float32)])


def newton_basis(X) -> dict:
    """What makes Newton steps cheap on the design X, computed once for every C fitted on it: the rows'
    Gram matrix when there are no more rows than features, else the eigenbasis of X^T X."""
    if len(X) <= X.shape[1]:
        return {"gram": X.astype(np.float64) @ X.T.astype(np.float64)}
    eigenvalues, eigenvectors = np.linalg.eigh((X.T @ X).astype(np.float64))
    return {"eigenvalues": eigenvalues.astype(np.float32), "eigenvectors": eigenvectors.astype(np.float32)}


def squared_hinge_ovr(X, Y, C, W=None, tol=1e-4, max_iter=50, cg_iter=50, basis=None):
    """(W, Newton steps taken, converged) for argmin_W sum_k 0.5 |w_k|^2 + C sum_i max(0, 1 - Y_ik x_i.w_k)^2,
    X (n x d), Y in {-1, 1}^(n x K); `basis` is newton_basis(X), computed here when not given."""
    basis = newton_basis(X) if basis is None else basis
    W = np.zeros((X.shape[1], Y.shape[1]), np.float32) if W is None else W.copy()
    positives = (Y > 0).sum(0)
    relative = tol * np.maximum(np.minimum(positives, len(Y) - positives), 1) / len(Y)
    enough = relative * np.linalg.norm(2 * C * (X.T @ Y), axis=0)  # liblinear's rule, per class
    for step in range(max_iter + 1):
        Z = X @ W
        M = np.maximum(0, 1 - Y * Z)
        G = W - 2 * C * (X.T @ (Y * M))
        norms = np.linalg.norm(G, axis=0)
        if not np.isfinite(norms).all():  # NaN compares as "small enough": it must never read as converged
            raise FloatingPointError(f"LinearSVM: the solver's gradient became non-finite at C={C}; "
                                     f"the inputs are too large for float32: standardize them")
        todo = np.flatnonzero(norms > enough)
        if len(todo) == 0 or step == max_iter:
            return W, step, len(todo) == 0
        violators = M[:, todo] > 0
        if "gram" in basis:
            S = newton_points(X, basis["gram"], Y[:, todo], violators, C) - W[:, todo]
        else:
            D = violators.astype(np.float32)
            S = conjugate_gradients(lambda V: V + 2 * C * (X.T @ (D * (X @ V))), -G[:, todo], cg_iter,
                                    covariance_preconditioner(basis, C, violators.mean(0)))
        W[:, todo] += line_search(W[:, todo], S, G[:, todo], Z[:, todo], X @ S, Y[:, todo], C) * S


def newton_points(X, gram, Y, violators, C):
    """Per class, the minimiser of the quadratic that the current margin violators define, from a
    Cholesky solve in row space. Classes whose violators are every row share one factorisation."""
    points = np.zeros((X.shape[1], Y.shape[1]), np.float32)
    everyone = violators.all(0)
    groups = ([np.flatnonzero(everyone)] if everyone.any() else []) + [[k] for k in np.flatnonzero(~everyone)]
    for classes in groups:
        rows = np.flatnonzero(violators[:, classes[0]])
        if len(rows) == 0:
            continue  # no violator: the minimiser is w = 0
        system = gram[np.ix_(rows, rows)] + np.eye(len(rows)) / (2 * C)
        beta = scipy.linalg.solve(system, Y[np.ix_(rows, classes)].astype(np.float64), assume_a="pos")
        points[:, classes] = X[rows].T @ beta.astype(np.float32)
    return points


def covariance_preconditioner(basis, C, violating_share):
    """R -> (I + 2C s_k X^T X)^-1 r_k per class k, s_k its share of violating rows: H with the violators
    replaced by an even share of every row, inverted in the eigenbasis of X^T X."""
    V = basis["eigenvectors"]
    inverse = 1 / (1 + 2 * C * basis["eigenvalues"][:, None] * violating_share[None, :].astype(np.float32))
    return lambda R: V @ (inverse * (V.T @ R))


def conjugate_gradients(hvp, B, max_iter, precondition, rtol=0.1):
    """Solves H x = b for every column of B at once, preconditioned (inexact: relative residual rtol, as
    TRON does)."""
    Xs = np.zeros_like(B)
    R = B.copy()
    P = precondition(R)
    rz = (R * P).sum(0)
    stop = rtol ** 2 * (R * R).sum(0)
    for _ in range(max_iter):
        HP = hvp(P)
        alpha = rz / np.maximum((P * HP).sum(0), 1e-30)
        Xs += alpha * P
        R -= alpha * HP
        if ((R * R).sum(0) <= stop).all():
            break
        Z = precondition(R)
        rz_new = (R * Z).sum(0)
        P = Z + (rz_new / np.maximum(rz, 1e-30)) * P
        rz = rz_new
    return Xs


def line_search(W, S, G, Z, XS, Y, C, shrink=0.5, tries=20):
    """Per-class backtracking (Armijo) step sizes; the objective along S costs no matrix product. In float64:
    near the optimum (and at small C) float32 cannot tell the objective's decrease from rounding, which
    stalled the solver short of liblinear's tolerance."""
    W, S, G, Z, XS, Y = (np.asarray(a, np.float64) for a in (W, S, G, Z, XS, Y))

    def objective(step):
        return 0.5 * ((W + step * S) ** 2).sum(0) + C * (np.maximum(0, 1 - Y * (Z + step * XS)) ** 2).sum(0)

    f0, slope = objective(np.zeros(W.shape[1])), (G * S).sum(0)
    step = np.ones(W.shape[1])
    for _ in range(tries):
        ok = objective(step) <= f0 + 1e-2 * step * slope
        if ok.all():
            break
        step = np.where(ok, step, step * shrink)
    return step.astype(np.float32)


class LinearSVM(ClassifierMixin, BaseEstimator):
    """Linear SVM, squared hinge, L2, on standardised inputs; C by stratified cross-validation over `Cs`
    unless given. `tol` and the stopping rule are LinearSVC's; `max_iter` counts Newton steps.
    `probability=True` adds predict_proba: Platt scaling as SVC(probability=True) has it, by scikit-learn's
    CalibratedClassifierCV (sigmoid per class, fitted on out-of-fold decision scores at the chosen C;
    `cv` more fits). Without it the SVM has decision scores only, which are not probabilities."""

    stacks_views = True  # trains on every view at once (views.with_all_views): kfold sizes its memory

    def __init__(self, C=None, Cs=(0.0001, 0.001, 0.01, 0.1, 1.0, 10.0, 100.0), cv=3, tol=1e-4, max_iter=50,
                 standardize=True, probability=False, random_state=0, verbose=0):
        self.C, self.Cs, self.cv, self.tol, self.max_iter = C, Cs, cv, tol, max_iter
        self.standardize, self.probability = standardize, probability
        self.random_state, self.verbose = random_state, verbose

    def check_data(self, input_shape, class_counts):
        """Cross-validation (the C search, and calibration) needs `cv` rows of every class in the training
        data: checked before the search, not by scikit-learn's ValueError after it started."""
        smallest = min(class_counts)
        if smallest >= self.cv:
            return
        if self.probability:
            raise BadParameter(f"LinearSVM: probability=true calibrates on cv={self.cv} folds, which needs {self.cv} "
                               f"training rows of every class; the smallest class has {smallest}: lower cv, or "
                               f"drop probability")
        if self.C is None:
            fix = f"give cv={smallest} or less, or a fixed C" if smallest >= 2 else "give a fixed C"
            raise BadParameter(f"LinearSVM: choosing C on cv={self.cv} folds needs {self.cv} training rows of every "
                               f"class; the smallest class has {smallest}: {fix}")

    def fit(self, X, y, views=None):
        """`views`: (rows, K, dim) cached augmented views of X's rows (optional): every view trains beside its
        plain row. C is cross-validated over images (a scored row's views never train its fold), and so are
        the probability sigmoids: each fold's SVM trains on its rows and their views, and is scored on plain
        rows it did not see."""
        X, y = training_data(self, X, y)
        X = as_vectors(X)
        self.n_views_ = view_count(X, views)
        self.scaler_ = fit_standardizer(X) if self.standardize else None
        plain = standardize(self.scaler_, X)  # once: every fold's design is cut from it

        def design(rows):  # (design, targets, class codes) of these rows, their views stacked after them
            if not self.n_views_:
                return with_bias(plain[rows]), self._targets(y[rows]), y[rows]
            codes, labels = with_all_views(plain, y, views, rows, self.scaler_, bias=True)
            return codes, self._targets(labels), labels

        unconverged = set()  # the Cs whose fits max_iter ended: one warning names them all
        fits = 1 + (self.cv * len(self.Cs) if self.C is None else 0)
        with progress_bar(total=fits, desc="svm", unit="fit", disable=not self.verbose) as bar:
            if self.C is None:
                self.cv_scores_ = self._cross_validate(plain, y, design, unconverged, bar)
                self.C_ = max(self.Cs, key=lambda C: (self.cv_scores_[C], -C))
            else:
                self.C_ = self.C
            A, Y, _ = design(np.arange(len(y)))
            W, self.n_iter_ = self._solve(A, Y, self.C_, None, unconverged)
            del A, Y
            bar.update()
        self.coef_, self.intercept_ = W[:-1].T, W[-1]
        self.validation_score_ = self.cv_scores_[self.C_] if self.C is None else None  # nothing held out
        self.chosen_params_ = {"C": self.C_}
        if unconverged:
            Cs = ", ".join(f"{C:g}" for C in sorted(unconverged))
            warnings.warn(f"LinearSVM: the solver reached max_iter={self.max_iter} Newton steps before converging "
                          f"(C={Cs}): raise max_iter, or leave those Cs out", ConvergenceWarning, stacklevel=2)
        if self.probability:
            self.sigmoid_a_, self.sigmoid_b_ = self._platt_scaling(X, y, views)
        return self

    def _platt_scaling(self, X, y, views=None):
        """(a, b) per one-vs-rest problem: P(class k | x) ~ 1 / (1 + exp(a_k score_k(x) + b_k)), fitted by
        scikit-learn's CalibratedClassifierCV on decision scores of rows each fold's SVM did not see (its views,
        sliced with its rows by scikit-learn, train that fold's SVM as they trained this one).
        Only the sigmoids are kept (plain numbers, saved without pickles); the SVM is the one fitted above."""
        fixed = clone(self).set_params(C=self.C_, probability=False, verbose=0)
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # said once already, for this C
            (calibrated,) = CalibratedClassifierCV(fixed, method="sigmoid", cv=folds, ensemble=False) \
                .fit(X, y, **({} if views is None else {"views": views})).calibrated_classifiers_
        return (np.array([c.a_ for c in calibrated.calibrators], np.float64),
                np.array([c.b_ for c in calibrated.calibrators], np.float64))

    def _targets(self, y):
        """+1/-1 per class; two classes are one problem, positive for classes_[1] (LinearSVC's convention)."""
        if len(self.classes_) == 2:
            return np.where(y == 1, 1.0, -1.0).astype(np.float32)[:, None]
        return np.where(y[:, None] == np.arange(len(self.classes_)), 1.0, -1.0).astype(np.float32)

    def _solve(self, A, Y, C, W, unconverged: set, basis=None):
        W, steps, converged = squared_hinge_ovr(A, Y, C, W, tol=self.tol, max_iter=self.max_iter, basis=basis)
        if not converged:
            unconverged.add(C)
        return W, steps

    def _cross_validate(self, plain, y, design, unconverged, bar):
        """Mean accuracy per C over `cv` folds of the standardised rows `plain`; `design(rows)` gives a fold's
        training data."""
        scores = {C: [] for C in self.Cs}
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state)
        for train, test in folds.split(plain, y):
            A_train, Y_train, _ = design(np.sort(train))
            A_test = with_bias(plain[test])  # plain rows only
            W, basis = None, newton_basis(A_train)
            for C in sorted(self.Cs):  # warm start along the regularisation path
                W, _ = self._solve(A_train, Y_train, C, W, unconverged, basis)
                scores[C].append(float((self._classify(A_test @ W) == y[test]).mean()))
                bar.update()
            del A_train, Y_train, A_test, basis  # before the next fold's design is built: one fold's at a time
        return {C: float(np.mean(s)) for C, s in scores.items()}

    @staticmethod
    def _classify(scores):
        """Class codes from decision scores: the sign for one problem, the best class for several."""
        return (scores[:, 0] > 0).astype(int) if scores.shape[1] == 1 else scores.argmax(axis=1)

    def decision_function(self, X):
        """(n,) for two classes (positive: classes_[1]), else (n, n_classes)."""
        X = as_vectors(new_data(self, X))
        scores = standardize(self.scaler_, X) @ self.coef_.T + self.intercept_
        return scores[:, 0] if len(self.classes_) == 2 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        return self.classes_[self._classify(scores[:, None] if scores.ndim == 1 else scores)]

    @available_if(lambda self: self.probability)
    def predict_proba(self, X):
        """Calibrated class probabilities (only with probability=True), computed as CalibratedClassifierCV
        computes them: each class's sigmoid of its score, normalised over the classes."""
        scores = self.decision_function(X)
        p = expit(-(self.sigmoid_a_ * (scores[:, None] if scores.ndim == 1 else scores) + self.sigmoid_b_))
        if len(self.classes_) == 2:
            return np.column_stack([1 - p[:, 0], p[:, 0]])
        total = p.sum(axis=1, keepdims=True)
        return np.divide(p, total, out=np.full_like(p, 1 / p.shape[1]), where=total != 0)
