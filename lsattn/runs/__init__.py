"""Run machinery: what makes a run safe to start, stop, resume and share.

Files written whole (`atomic`), one writer per run folder (`run_lock`),
signals (`interrupts`), the run folder's config (`run_folder`), checkpoints
(`checkpoint`), devices and processes (`parallel`), and how the steps compile
(`compilation`). Nothing here knows the recurrent core or trains anything.
"""
