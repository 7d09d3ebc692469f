namespace SparseDecode.Evaluation;

/// <summary>Where a grid run stands: estimated work done and total (in seconds of expected compute, so that an
/// ETA follows), the cell being run, and cells done (run now or found on disk) out of all.</summary>
public readonly record struct EvalProgress(double Done, double Total, string Current, int CellsDone, int CellsTotal, int CellsCached);
